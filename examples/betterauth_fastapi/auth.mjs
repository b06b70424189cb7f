// The node side: a Better Auth server (what a Next.js app's `lib/auth.ts` and its
// `app/api/auth/[...all]/route.ts` do), serving /api/auth/* on PORT (3000).
//
//   BETTER_AUTH_SECRET=... COOKIE_CACHE_STRATEGY=compact node auth.mjs
//
// DATABASE_URL (postgres://...) keeps users and sessions in PostgreSQL (the tables are
// created at start); without it they live in memory. STATELESS=1 runs with no database:
// the cookie cache (jwe) is then the session.
import http from "node:http";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { admin } from "better-auth/plugins";
import pg from "pg";

const port = Number(process.env.PORT || 3000);
const stateless = process.env.STATELESS === "1";
const options = {
  baseURL: process.env.BETTER_AUTH_URL || `http://localhost:${port}`,
  emailAndPassword: { enabled: true },
  plugins: [admin()], // users get a `role` ("user", "admin"), bans and impersonation
  telemetry: { enabled: false },
};
if (!stateless) {
  options.session = {
    cookieCache: {
      enabled: true,
      strategy: process.env.COOKIE_CACHE_STRATEGY || "compact",
      maxAge: 300,
    },
  };
  options.database = process.env.DATABASE_URL
    ? new pg.Pool({ connectionString: process.env.DATABASE_URL })
    : memoryAdapter({ user: [], session: [], account: [], verification: [] });
}
if (process.env.DATABASE_URL && !stateless) {
  const { runMigrations } = await getMigrations(options);
  await runMigrations();
}
const auth = betterAuth(options);
const handler = toNodeHandler(auth);

http.createServer((req, res) => {
  if (req.url.startsWith("/api/auth/")) return handler(req, res);
  res.writeHead(404).end();
}).listen(port, "127.0.0.1", () => console.log(`Better Auth on http://localhost:${port}`));
