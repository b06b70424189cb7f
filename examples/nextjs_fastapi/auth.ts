// auth.ts: NextAuth v5 (Auth.js) for the Next.js side. The Python API (api.py) reads
// the session cookie this writes: keep AUTH_SECRET the same on both sides.
import NextAuth from "next-auth"
import Credentials from "next-auth/providers/credentials"

// Replace with your own user lookup (a database, an OAuth provider...).
async function findUser(username: string, password: string) {
  const users: Record<string, { password: string; role: string; name: string }> = {
    ada: { password: "ada-password", role: "ADMIN", name: "Ada" },
    bob: { password: "bob-password", role: "USER", name: "Bob" },
  }
  const user = users[username]
  return user && user.password === password ? { id: username, name: user.name, role: user.role } : null
}

export const { handlers, auth, signIn, signOut } = NextAuth({
  session: { strategy: "jwt" },
  providers: [
    Credentials({
      credentials: { username: {}, password: {} },
      authorize: (c) => findUser(String(c.username), String(c.password)),
    }),
  ],
  callbacks: {
    jwt({ token, user }) {
      if (user) {
        // At sign-in only: the role the Python guards check, and when the user signed
        // in (so that revoke_sessions() on the Python side ends every earlier sign-in).
        token.role = (user as { role?: string }).role ?? "USER"
        token.auth_time = Math.floor(Date.now() / 1000)
      }
      return token
    },
    session({ session, token }) {
      session.user.id = token.sub as string
      ;(session.user as { role?: unknown }).role = token.role
      return session
    },
  },
})
