// The real Better Auth (pinned in package.json) for the Python tests: one JSON request a
// line on stdin, one JSON reply a line on stdout ({ok, result} or {ok: false, error}).
//
// An "app" is one betterAuth() instance, made by {op: "app", name, config}: config picks
// the cookie cache strategy, stateless mode (no database), the admin plugin and the
// database (the memory adapter, or a PostgreSQL URL through pg). Requests go through the
// app's own handler, so cookies are exactly what a browser would get.
import readline from "node:readline";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { admin } from "better-auth/plugins";
import { getMigrations } from "better-auth/db/migration";
import pg from "pg";

const apps = new Map();
const pools = [];

function makeOptions(config) {
  const options = {
    secret: config.secret,
    baseURL: config.baseURL || "http://localhost:3000",
    emailAndPassword: { enabled: true },
    logger: { disabled: true },
    advanced: { useSecureCookies: !!config.secure },
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    plugins: config.admin === false ? [] : [admin()],
    session: {},
  };
  if (config.secrets) options.secrets = config.secrets;
  if (config.cookieCache) options.session.cookieCache = config.cookieCache;
  if (config.expiresIn) options.session.expiresIn = config.expiresIn;
  if (config.postgres) {
    const pool = new pg.Pool({ connectionString: config.postgres, max: 2 });
    pool.on("error", () => {}); // the server going away at the end of a test run
    pools.push(pool);
    options.database = pool;
  } else if (!config.stateless) {
    options.database = memoryAdapter({ user: [], session: [], account: [], verification: [] });
  }
  return options;
}

async function request(app, method, path, { cookies, body } = {}) {
  const headers = new Headers({ origin: app.origin });
  if (cookies) headers.set("cookie", Object.entries(cookies).map(([k, v]) => `${k}=${v}`).join("; "));
  if (body != null) headers.set("content-type", "application/json");
  const response = await app.auth.handler(new Request(`${app.origin}/api/auth${path}`, {
    method, headers, body: body == null ? undefined : JSON.stringify(body),
  }));
  const text = await response.text();
  return {
    status: response.status,
    body: text ? JSON.parse(text) : null,
    setCookie: response.headers.getSetCookie(),
  };
}

function headersFor(cookies) {
  return new Headers({ cookie: Object.entries(cookies).map(([k, v]) => `${k}=${v}`).join("; ") });
}

const ops = {
  async app({ name, config }) {
    const options = makeOptions(config);
    const auth = betterAuth(options);
    if (config.postgres && config.migrate !== false) {
      const { runMigrations } = await getMigrations(options);
      await runMigrations();
    }
    apps.set(name, { auth, origin: options.baseURL });
    return true;
  },
  // POST/GET a Better Auth route through its handler: {status, body, setCookie}.
  async call({ name, method, path, cookies, body }) {
    return request(apps.get(name), method, path, { cookies, body });
  },
  async setRole({ name, cookies, userId, role }) {
    return apps.get(name).auth.api.setRole({ body: { userId, role }, headers: headersFor(cookies) });
  },
  async banUser({ name, cookies, userId }) {
    return apps.get(name).auth.api.banUser({ body: { userId }, headers: headersFor(cookies) });
  },
  // What the app knows without a request (tests make an admin with it).
  async updateUser({ name, userId, data }) {
    const context = await apps.get(name).auth.$context;
    return context.internalAdapter.updateUser(userId, data);
  },
  async close() {
    await Promise.all(pools.map((pool) => pool.end()));
    return true;
  },
};

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  let reply;
  try {
    const req = JSON.parse(line);
    reply = { ok: true, result: (await ops[req.op](req)) ?? null };
  } catch (error) {
    reply = { ok: false, error: `${error?.name}: ${error?.message}` };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
