// Experiment for bench/connect.py --init-script: what opening the WebSocket before Python has loaded
// would gain. Opens /ws at once and hands that socket to the widget's first `new WebSocket(sameUrl)`,
// replaying 'open' if it already happened (the server says nothing before the widget's hello).
// The real thing belongs in the widget (see docs/performance.md), not in a patched global.
(() => {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/ws?v=1`;
  const Native = window.WebSocket;
  let early = new Native(url);
  let opened = false;
  early.addEventListener("open", () => { opened = true; });
  function Handoff(target, protocols) {
    if (early && target === url && protocols === undefined) {
      const socket = early;
      early = null;
      window.WebSocket = Native;
      if (opened) setTimeout(() => socket.onopen && socket.onopen(new Event("open")), 0);
      return socket;
    }
    return protocols === undefined ? new Native(target) : new Native(target, protocols);
  }
  Handoff.prototype = Native.prototype;
  for (const name of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) Handoff[name] = Native[name];
  window.WebSocket = Handoff;
})();
