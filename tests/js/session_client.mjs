// The browser client (asgi_jwt_session/static/session.js) in two fake tabs: fetch,
// BroadcastChannel and the script's own URL faked. `node session_client.mjs session.js`
// prints "ok" or fails an assertion.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const source = readFileSync(process.argv[2], "utf8");
const requests = [];
let role = "USER";
let refreshGate = null;  // resolve() lets the pending refresh answer
let nextRefreshStatus = 200;
let failCsrfOnce = false;
let tokenCount = 0;
let announcedHeader = null;  // the csrfHeader GET /session names; none: an older server

function reply(status, body) {
  return { ok: status >= 200 && status < 300, status, url: "", json: async () => body };
}

async function fakeFetch(url, init) {
  requests.push({ url, method: init.method, headers: init.headers,
                  credentials: init.credentials });
  const path = new URL(url).pathname;
  if (path === "/app/v1/auth/session" && init.method === "GET") {
    tokenCount += 1;
    const body = { session: { user: { id: "alice", role } }, csrfToken: "token" + tokenCount };
    if (announcedHeader !== null) body.csrfHeader = announcedHeader;
    return reply(200, body);
  }
  if (init.headers[announcedHeader || "X-CSRF-Token"] !== "token" + tokenCount) {
    return reply(403, {});
  }
  if (failCsrfOnce) { failCsrfOnce = false; return reply(403, {}); }
  if (path === "/app/v1/auth/session/refresh") {
    await new Promise((resolve) => { refreshGate = resolve; });
    if (nextRefreshStatus !== 200) return reply(nextRefreshStatus, {});
    return reply(200, { session: { user: { id: "alice", role } } });
  }
  if (path === "/app/v1/auth/signout") return reply(200, { session: null });
  return reply(404, {});
}

function tab() {
  const context = { fetch: fakeFetch, BroadcastChannel, URL, setTimeout, console,
                    document: { currentScript: {
                      src: "http://site.example/app/v1/auth/session.js?v=3" } } };
  context.window = context;
  vm.createContext(context);
  vm.runInContext(source, context);
  return context.window.asgiJwtSession;
}

async function until(condition) {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(condition(), "timed out");
}

const a = tab();
const b = tab();
const seenByA = [];
const seenByB = [];
a.onChange((session) => seenByA.push(session));
const stop = b.onChange((session) => seenByB.push(session));

// getSession: the base path comes from the script's own URL.
assert.deepEqual(await a.getSession(), { user: { id: "alice", role: "USER" } });
assert.equal(requests[0].url, "http://site.example/app/v1/auth/session");
assert.equal(requests[0].credentials, "same-origin");

// Concurrent refreshes share one request.
role = "ADMIN";
const first = a.refreshSession();
const second = a.refreshSession();
assert.equal(first, second);
await until(() => refreshGate !== null);
refreshGate(); refreshGate = null;
const [one, two] = await Promise.all([first, second]);
assert.deepEqual(one, { user: { id: "alice", role: "ADMIN" } });
assert.equal(one, two);
const posts = requests.filter((r) => r.method === "POST");
assert.equal(posts.length, 1);
assert.equal(posts[0].url, "http://site.example/app/v1/auth/session/refresh");
assert.equal(posts[0].headers["X-CSRF-Token"], "token1");
assert.equal(posts[0].credentials, "same-origin");

// This tab's listeners and the other tab's learn of it.
assert.deepEqual(seenByA, [one]);
await until(() => seenByB.length === 1);
assert.deepEqual(seenByB, [one]);

// Once settled, the next refresh is a new request; a 503 rejects and is not shared later.
nextRefreshStatus = 503;
const failing = a.refreshSession();
await until(() => refreshGate !== null);
refreshGate(); refreshGate = null;
await assert.rejects(failing, (error) => error.status === 503);
nextRefreshStatus = 200;
const again = a.refreshSession();
assert.notEqual(again, failing);
await until(() => refreshGate !== null);
refreshGate(); refreshGate = null;
await again;

// A 403 (the CSRF cookie changed) fetches the token again and retries once.
failCsrfOnce = true;
const before = requests.length;
assert.equal(await a.signOut(), null);
assert.deepEqual(requests.slice(before).map((r) => r.method), ["POST", "GET", "POST"]);
await until(() => seenByB.length === 3);
assert.equal(seenByB[2], null);
assert.equal(seenByA[seenByA.length - 1], null);

// A refresh answered 401 (signed out, or the user is gone) resolves null, broadcast.
stop();
nextRefreshStatus = 401;
const gone = b.refreshSession();
await until(() => refreshGate !== null);
refreshGate(); refreshGate = null;
assert.equal(await gone, null);
await until(() => seenByA.length === 4);
assert.equal(seenByA[3], null);
assert.equal(seenByB.length, 3);  // its listener was removed

// The server names its CSRF header (session_routes(csrf_header=...)): the client uses it.
announcedHeader = "x-xsrf";
const c = tab();
await c.getSession();
const start = requests.length;
assert.equal(await c.signOut(), null);
const sent = requests.slice(start);
assert.deepEqual(sent.map((r) => r.method), ["POST"]);
assert.equal(sent[0].headers["x-xsrf"], "token" + tokenCount);
assert.equal(sent[0].headers["X-CSRF-Token"], undefined);
console.log("ok");
process.exit(0);
