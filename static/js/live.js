// Live pages (portal/live.py): open each page socket with the version of the partial the page
// shows, so the server sends the partial when it changed meanwhile (between render and
// subscription, or while the socket was down), and show whether the page is live.
(() => {
  if (!window.htmx) return;
  // The extension's own back-off (1 s, 2 s, 4 s … 64 s, each randomised): set it in case the
  // extension's default ever changes.
  htmx.config.wsReconnectDelay = htmx.config.wsReconnectDelay || "full-jitter";
  // Close codes after which the extension reconnects; after any other the page stays offline.
  const RETRIED = [1006, 1011, 1012, 1013];
  const TEXT = {
    up: "Live",
    connecting: "Reconnecting…",
    first: "Connecting…",
    down: "Offline — changes will appear when the connection returns",
    closed: "Offline — reload the page to see changes",
  };

  // The extension turns ws-connect="/ws/…" into this address before calling createWebSocket.
  const absolute = (source) => {
    if (!source.startsWith("/")) return source;
    const host = location.hostname + (location.port ? `:${location.port}` : "");
    return `${location.protocol === "https:" ? "wss://" : "ws://"}${host}${source}`;
  };
  const socketElement = (url) =>
    Array.from(document.querySelectorAll("[ws-connect]")).find((elt) => absolute(elt.getAttribute("ws-connect")) === url);

  const opened = new WeakSet(); // sockets elements that asked for a socket before
  const versioned = (url) => {
    const elt = socketElement(url);
    if (!elt) return url;
    const root = elt.querySelector("[data-live-version]");
    const address = new URL(url);
    if (root) {
      address.searchParams.set("v", root.dataset.liveVersion);
    } else if (opened.has(elt)) {
      // A reconnect of a page whose partial carries no version (it showed a form's errors, or
      // was refreshed by a poll): an empty one never matches, so the server sends the partial.
      address.searchParams.set("v", "");
    }
    opened.add(elt);
    return address.toString();
  };
  const create = htmx.createWebSocket || ((url) => {
    const socket = new WebSocket(url, []);
    socket.binaryType = htmx.config.wsBinaryType;
    return socket;
  });
  htmx.createWebSocket = (url) => create(versioned(url));

  // The indicator: the worst state of the page's sockets.
  const states = new Map();
  const show = () => {
    const indicator = document.querySelector(".live-indicator");
    if (!indicator || states.size === 0) return;
    const all = Array.from(states.values());
    const state = ["closed", "down", "connecting", "first", "up"].find((s) => all.includes(s));
    indicator.dataset.state = state === "closed" ? "down" : state === "first" ? "connecting" : state;
    indicator.textContent = TEXT[state];
    indicator.hidden = false;
  };
  const set = (elt, state) => {
    states.set(elt, state);
    show();
  };
  document.addEventListener("htmx:wsConnecting", (event) => {
    set(event.target, states.has(event.target) ? "connecting" : "first");
  });
  document.addEventListener("htmx:wsOpen", (event) => set(event.target, "up"));
  document.addEventListener("htmx:wsClose", (event) => {
    // A socket of an element that left the page (htmx swapped it out) no longer counts.
    if (!document.body.contains(event.target)) {
      states.delete(event.target);
      show();
      return;
    }
    set(event.target, RETRIED.includes(event.detail.event.code) ? "down" : "closed");
  });
})();
