/* The demo's page script: the refresh button, the API and websocket buttons, and the
 * login page's "Use" buttons. The session client is /auth/session.js from the package. */
(() => {
  "use strict";

  const client = window.asgiJwtSession;
  const $ = (selector) => document.querySelector(selector);
  const signedIn = document.body.hasAttribute("data-signed-in");

  function formatTime(iso) {
    if (!iso) return "-";
    return iso.replace("T", " ").replace(/\.\d+/, "").replace(/(Z|\+00:00)$/, " UTC");
  }

  function render(session) {
    if (session === null) {  // signed out here or in another tab
      if (signedIn) window.location.assign("/login");
      return;
    }
    const role = session.user.role;
    document.querySelectorAll("[data-session-role]").forEach((element) => {
      element.textContent = role;
      element.className = `role role-${role.toLowerCase()}`;
    });
    document.querySelectorAll("[data-session-expires]").forEach((element) => {
      element.textContent = formatTime(session.expires);
    });
    const view = $("#browser-session");
    if (view) view.textContent = JSON.stringify(session, null, 2);
  }

  client.onChange(render);

  const view = $("#browser-session");
  if (view) {
    client.getSession().then((session) => {
      view.textContent = JSON.stringify(session, null, 2);
    });
  }

  document.querySelectorAll("[data-refresh]").forEach((button) => {
    button.addEventListener("click", async () => {
      const status = $("#refresh-status");
      button.disabled = true;
      status.textContent = "Refreshing…";
      try {
        const session = await client.refreshSession();
        if (session === null) return;  // render() goes to the sign-in page
        const checked = $("[data-session-checked]");
        if (checked) checked.textContent = "just now";
        const version = $("[data-session-version]");
        if (version) {  // not in the session view: ask the API, as a page would
          const response = await fetch("/api/me", { headers: { Accept: "application/json" } });
          if (response.ok) version.textContent = String((await response.json()).version);
        }
        status.textContent = `Refreshed: your role is ${session.user.role}.`;
        if (button.dataset.refresh === "reload") window.location.assign(window.location.href);
      } catch (error) {
        status.textContent = `Refresh failed (${error.status || error.message}); the session is unchanged.`;
      } finally {
        button.disabled = false;
      }
    });
  });

  const output = $("#api-output");

  document.querySelectorAll("[data-fetch]").forEach((button) => {
    button.addEventListener("click", async () => {
      const path = button.dataset.fetch;
      const response = await fetch(path, { headers: { Accept: "application/json" } });
      const body = await response.json();
      output.textContent = `GET ${path} → ${response.status}\n${JSON.stringify(body, null, 2)}`;
    });
  });

  document.querySelectorAll("[data-websocket]").forEach((button) => {
    button.addEventListener("click", () => {
      const path = button.dataset.websocket;
      const url = new URL(path, window.location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      const lines = [`WebSocket ${path}`];
      output.textContent = lines.join("\n");
      const socket = new WebSocket(url);
      socket.onopen = () => lines.push("open");
      socket.onmessage = (event) => lines.push(`message: ${event.data}`);
      socket.onclose = (event) => {
        lines.push(`closed: ${event.code} ${event.reason}`);
        output.textContent = lines.join("\n");
      };
    });
  });

  document.querySelectorAll("[data-fill]").forEach((button) => {
    button.addEventListener("click", () => {
      $("#email").value = button.dataset.fill;
      $("#password").value = button.dataset.password;
      $("#password").focus();
    });
  });
})();
