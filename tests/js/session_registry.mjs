// The browser client's session-registry calls (listSessions, revokeSession,
// revokeOtherSessions) in two fake tabs, against a fake server.
// `node session_registry.mjs session.js` prints "ok" or fails an assertion.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const source = readFileSync(process.argv[2], "utf8");
const requests = [];
let tokenCount = 0;
let signedIn = true;
const sessions = [
  { id: "this-one", created: "2025-01-01T00:00:00Z", renewed: "2025-01-02T00:00:00Z",
    expires: "2025-02-01T00:00:00Z", userAgent: "Firefox", client: "203.0.113.0/24",
    current: true },
  { id: "a/b c", created: "2025-01-01T00:00:00Z", renewed: "2025-01-01T00:00:00Z",
    expires: "2025-02-01T00:00:00Z", userAgent: null, client: null, current: false },
];

function reply(status, body) {
  return { ok: status >= 200 && status < 300, status, url: "", json: async () => body };
}

async function fakeFetch(url, init) {
  requests.push({ url, method: init.method, headers: init.headers });
  const path = new URL(url).pathname;
  if (path === "/auth/session" && init.method === "GET") {
    tokenCount += 1;
    return reply(200, { session: signedIn ? { user: { id: "alice", role: "USER" } } : null,
                        csrfToken: "token" + tokenCount, csrfHeader: "x-csrf-token" });
  }
  if (path === "/auth/sessions" && init.method === "GET") {
    if (!signedIn) return reply(401, { detail: "Not authenticated" });
    // A page of ?limit= (20) from ?cursor= (here: the index to start at).
    const query = new URL(url).searchParams;
    const start = Number(query.get("cursor") || 0);
    const end = start + Number(query.get("limit") || 20);
    return reply(200, { sessions: sessions.slice(start, end),
                        nextCursor: end < sessions.length ? String(end) : null });
  }
  if (init.method !== "POST" || init.headers["x-csrf-token"] !== "token" + tokenCount) {
    return reply(403, {});
  }
  if (!signedIn) return reply(401, { detail: "Not authenticated" });
  const match = /^\/auth\/sessions\/([^/]+)\/revoke$/.exec(path);
  if (match) {
    const id = decodeURIComponent(match[1]);
    const found = sessions.find((s) => s.id === id);
    if (!found) return reply(404, { detail: "No such session" });
    sessions.splice(sessions.indexOf(found), 1);
    if (found.current) signedIn = false;
    return reply(200, { revoked: id, current: found.current });
  }
  if (path === "/auth/sessions/revoke-others") {
    sessions.splice(0, sessions.length, ...sessions.filter((s) => s.current));
    return reply(200, { session: { user: { id: "alice", role: "USER" } } });
  }
  return reply(404, {});
}

function tab() {
  const context = { fetch: fakeFetch, BroadcastChannel, URL, setTimeout, console,
                    document: { currentScript: { src: "http://site.example/auth/session.js" } } };
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
b.onChange((session) => seenByB.push(session));

// listSessions: a GET under the script's base, no CSRF token needed.
const listed = await a.listSessions();
assert.equal(listed.length, 2);
assert.equal(listed[0].current, true);
assert.equal(requests[0].url, "http://site.example/auth/sessions");
assert.equal(requests[0].method, "GET");
assert.equal(listed.nextCursor, null);

// A page at a time: limit and cursor go in the query, nextCursor comes back on the array.
const first = await a.listSessions({ limit: 1 });
assert.deepEqual(first.map((s) => s.id), ["this-one"]);
assert.equal(requests[requests.length - 1].url, "http://site.example/auth/sessions?limit=1");
const second = await a.listSessions({ limit: 1, cursor: first.nextCursor });
assert.deepEqual(second.map((s) => s.id), ["a/b c"]);
assert.equal(second.nextCursor, null);
assert.equal(requests[requests.length - 1].url,
             "http://site.example/auth/sessions?cursor=1&limit=1");
requests.splice(0, requests.length);

// revokeSession: the id is escaped into the path; the CSRF token is fetched first.
let before = requests.length;
assert.deepEqual({ ...(await a.revokeSession("a/b c")) }, { revoked: "a/b c", current: false });
const sent = requests.slice(before);
assert.deepEqual(sent.map((r) => r.method), ["GET", "POST"]);
assert.equal(sent[1].url, "http://site.example/auth/sessions/a%2Fb%20c/revoke");
assert.equal(sent[1].headers["x-csrf-token"], "token1");
assert.deepEqual(seenByA, []);  // another device: this session is unchanged

// An id that is not one of this user's: rejected with the status.
await assert.rejects(a.revokeSession("someone-else"), (error) => error.status === 404);

// revokeOtherSessions: resolves to this session, told to this tab and the others.
sessions.push({ ...sessions[0], id: "phone", current: false });
const kept = await a.revokeOtherSessions();
assert.deepEqual({ ...kept }, { user: { id: "alice", role: "USER" } });
assert.equal(requests[requests.length - 1].url, "http://site.example/auth/sessions/revoke-others");
assert.deepEqual((await a.listSessions()).map((s) => s.id), ["this-one"]);
assert.equal(seenByA.length, 1);
await until(() => seenByB.length === 1);

// Revoking this session signs this browser out: every tab hears null.
const result = await b.revokeSession("this-one");
assert.equal(result.current, true);
await until(() => seenByA.length === 2);
assert.equal(seenByA[1], null);
assert.equal(seenByB[seenByB.length - 1], null);

// Signed out: listing rejects with 401; revoking the others resolves null.
await assert.rejects(a.listSessions(), (error) => error.status === 401);
assert.equal(await a.revokeOtherSessions(), null);
console.log("ok");
process.exit(0);
