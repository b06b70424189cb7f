/*
 * asgi-jwt-session browser client (ES2017, no dependencies).
 *
 *   <script src="/auth/session.js"></script>
 *   const session = await asgiJwtSession.getSession();    // null, or {user: {id, role}, expires}
 *   await asgiJwtSession.refreshSession();                 // re-read the role on the server
 *   await asgiJwtSession.signOut();
 *   asgiJwtSession.onChange((session) => render(session)); // this tab and every other tab
 *
 * With a session registry on the server:
 *   const sessions = await asgiJwtSession.listSessions();  // [{id, created, renewed, expires,
 *                                                          //   userAgent, client, current}]
 *   await asgiJwtSession.listSessions({cursor: sessions.nextCursor});  // the next page
 *   await asgiJwtSession.revokeSession(sessions[1].id);     // sign that device out
 *   await asgiJwtSession.revokeOtherSessions();             // every device but this one
 *
 * The endpoints are found next to this script, so it works under any mount prefix.
 */
(() => {
  "use strict";

  const script = document.currentScript;
  const base = script && script.src ? new URL(".", script.src).href.replace(/\/$/, "") : "/auth";
  const channel = typeof BroadcastChannel === "function"
    ? new BroadcastChannel("asgi-jwt-session") : null;
  const listeners = new Set();
  let csrfToken = null;
  let csrfHeader = "X-CSRF-Token";  // until GET /session names the server's
  let refreshing = null;

  function notify(session) {
    listeners.forEach((listener) => {
      try {
        listener(session);
      } catch (error) {
        setTimeout(() => { throw error; });  // report it, but let the other listeners run
      }
    });
  }

  function changed(session) {
    notify(session);
    if (channel) channel.postMessage({ session: session });
  }

  if (channel) channel.onmessage = (event) => notify(event.data.session);

  function httpError(response) {
    const error = new Error(`${response.url} answered ${response.status}`);
    error.status = response.status;
    return error;
  }

  function send(method, path) {
    const headers = { Accept: "application/json" };
    if (method === "POST") headers[csrfHeader] = csrfToken;
    return fetch(base + path, { method, headers, credentials: "same-origin", cache: "no-store" });
  }

  /** The session: null, or {user: {id, role}, expires}. Also fetches the CSRF token
   *  and the name of the header it goes in. */
  async function getSession() {
    const response = await send("GET", "/session");
    if (!response.ok) throw httpError(response);
    const data = await response.json();
    csrfToken = data.csrfToken;
    if (data.csrfHeader) csrfHeader = data.csrfHeader;
    return data.session;
  }

  async function post(path) {
    if (csrfToken === null) await getSession();
    let response = await send("POST", path);
    if (response.status === 403) {  // the CSRF cookie changed since: fetch it again, once
      await getSession();
      response = await send("POST", path);
    }
    return response;
  }

  /** Re-read the role from the server. Concurrent calls share one request. */
  function refreshSession() {
    if (refreshing === null) {
      refreshing = (async () => {
        try {
          const response = await post("/session/refresh");
          if (response.status === 401) {  // signed out, or the user is gone
            changed(null);
            return null;
          }
          if (!response.ok) throw httpError(response);  // 503: the old session stays
          const session = (await response.json()).session;
          changed(session);
          return session;
        } finally {
          refreshing = null;
        }
      })();
    }
    return refreshing;
  }

  /** Sign out everywhere this browser is signed in. */
  async function signOut() {
    const response = await post("/signout");
    if (!response.ok) throw httpError(response);
    changed(null);
    return null;
  }

  /** This user's signed-in sessions (the server's session registry), the last renewed
   *  first, a page at a time: `{limit}` (1 to 100, 20 by default) and `{cursor}` (the
   *  previous page's `nextCursor`). Resolves to an array of sessions whose `nextCursor`
   *  gives the next page (null: the last); `current` marks this one. Rejects with
   *  error.status 401 when signed out, 404 when the server keeps no registry, 400 for
   *  a bad limit or cursor. */
  async function listSessions({ cursor = null, limit = null } = {}) {
    const query = [];
    if (cursor !== null) query.push(`cursor=${encodeURIComponent(cursor)}`);
    if (limit !== null) query.push(`limit=${encodeURIComponent(String(limit))}`);
    const suffix = query.length ? `?${query.join("&")}` : "";
    const response = await send("GET", `/sessions${suffix}`);
    if (!response.ok) throw httpError(response);
    const data = await response.json();
    const sessions = data.sessions;
    sessions.nextCursor = data.nextCursor || null;
    return sessions;
  }

  /** Sign one session out, on every device and server. Revoking this one signs this
   *  browser out (listeners hear null). Rejects with error.status 404 for an id that is
   *  not one of this user's sessions. */
  async function revokeSession(id) {
    const response = await post(`/sessions/${encodeURIComponent(id)}/revoke`);
    if (response.status === 401) {
      changed(null);
      throw httpError(response);
    }
    if (!response.ok) throw httpError(response);
    const data = await response.json();
    if (data.current) changed(null);
    return data;
  }

  /** Sign out every other session of this user and stay signed in here; resolves to
   *  this session (re-issued). */
  async function revokeOtherSessions() {
    const response = await post("/sessions/revoke-others");
    if (response.status === 401) {
      changed(null);
      return null;
    }
    if (!response.ok) throw httpError(response);
    const session = (await response.json()).session;
    changed(session);
    return session;
  }

  /** Call listener(session) whenever a refresh or sign-out changes it, in any tab.
   *  Returns a function that removes the listener. */
  function onChange(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  window.asgiJwtSession = Object.freeze({
    getSession, refreshSession, signOut, onChange,
    listSessions, revokeSession, revokeOtherSessions,
  });
})();
