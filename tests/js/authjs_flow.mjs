// The real Auth.js sign-in flow (@auth/core's Auth() handler, a Credentials provider)
// behind the same line protocol as authjs.mjs: one JSON request per line on stdin, one
// JSON reply per line on stdout ({"ok", "result"|"error"}). Run from the directory where
// `npm install` put @auth/core (tests/test_reliability_authjs.py).
//
// Every op takes the app's options: `secret` (a string or a list), or `env` (an
// environment object read as the framework reads it: "core" is @auth/core's
// setEnvDefaults, "next-auth" is NextAuth v5's `config.secret ??= AUTH_SECRET ??
// NEXTAUTH_SECRET` before it); `cookieName` (cookies.sessionToken.name), `maxAge`
// (session.maxAge), `https`.
import { createInterface } from "node:readline";
import { Auth, setEnvDefaults } from "@auth/core";
import Credentials from "@auth/core/providers/credentials";

const quiet = { debug() {}, error() {}, warn() {} };

function config(req) {
  const cfg = {
    basePath: "/auth",
    trustHost: true,
    logger: quiet,
    providers: [
      Credentials({
        credentials: { username: {}, role: {} },
        authorize: (c) => ({ id: c.username, name: c.username, role: c.role || "USER" }),
      }),
    ],
    session: { strategy: "jwt", ...(req.maxAge ? { maxAge: req.maxAge } : {}) },
    callbacks: {
      jwt({ token, user }) {
        if (user) token.role = user.role;
        if (user && req.extra) Object.assign(token, req.extra);
        return token;
      },
      session({ session, token }) {
        session.user.id = token.sub;
        session.user.role = token.role;
        return session;
      },
    },
  };
  if (req.cookieName) cfg.cookies = { sessionToken: { name: req.cookieName } };
  if (req.secret) {
    cfg.secret = req.secret;
  } else {
    const env = req.env ?? {};
    if (req.framework === "next-auth") cfg.secret ??= env.AUTH_SECRET ?? env.NEXTAUTH_SECRET;
    setEnvDefaults(env, cfg);
  }
  return cfg;
}

function origin(req) {
  return req.https ? "https://app.test" : "http://app.test";
}

function setCookies(response) {
  return response.headers.getSetCookie();
}

function jar(lines, cookies = {}) {
  for (const line of lines) {
    const [pair, ...attributes] = line.split(";");
    const at = pair.indexOf("=");
    const name = pair.slice(0, at).trim();
    const value = pair.slice(at + 1).trim();
    const expired = attributes.some((a) => /^\s*max-age=0\s*$/i.test(a)) ||
      attributes.some((a) => /^\s*expires=thu, 01 jan 1970/i.test(a));
    if (expired || !value) delete cookies[name];
    else cookies[name] = value;
  }
  return cookies;
}

function cookieHeader(cookies) {
  return Object.entries(cookies).map(([n, v]) => `${n}=${v}`).join("; ");
}

// Sign in with the Credentials provider; the cookies the browser then holds.
async function signIn(req) {
  const cfg = config(req);
  const csrf = await Auth(new Request(`${origin(req)}/auth/csrf`), cfg);
  const cookies = jar(setCookies(csrf));
  const { csrfToken } = await csrf.json();
  const body = new URLSearchParams({ csrfToken, username: req.user, role: req.role ?? "" });
  const response = await Auth(new Request(`${origin(req)}/auth/callback/credentials`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: cookieHeader(cookies) },
    body,
  }), config(req));
  if (response.status !== 302) throw new Error(`sign-in answered ${response.status}`);
  return jar(setCookies(response), cookies);
}

// GET /auth/session with these cookies: what Auth.js reads (and re-issues).
async function session(req) {
  const response = await Auth(new Request(`${origin(req)}/auth/session`, {
    headers: { cookie: cookieHeader(req.cookies) },
  }), config(req));
  return { status: response.status, body: await response.json(), setCookies: setCookies(response) };
}

// The secrets the app ends up with (config.secret after the env defaults).
function secrets(req) {
  const cfg = config(req);
  return typeof cfg.secret === "string" ? [cfg.secret] : cfg.secret;
}

const ops = { signIn, session, secrets };

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const { op, ...req } = JSON.parse(line);
  let reply;
  try {
    reply = { ok: true, result: (await ops[op](req)) ?? null };
  } catch (err) {
    reply = { ok: false, error: `${err.name}: ${err.message}` };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
