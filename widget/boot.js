// The frame's only JavaScript, before and beside Python: it carries the host page's open and close
// (from embed.js) to the widget and tells the host the widget's state and unread count, applies the
// snippet's title, greeting, accent and font before the first paint, keeps Send from submitting natively,
// and says so if the runtime never starts (Python cannot report that).
(function () {
  // PyScript opens the IndexedDB "IDBMap/@pyscript.fs" as it loads, for fs.mount, which the widget does
  // not use: that open would store a database before the visitor opened the chat, and where a frame on
  // another site is denied storage, PyScript's error handler throws twice into the console. It never answers.
  var open = indexedDB.open.bind(indexedDB);
  indexedDB.open = function (name) { return name === "IDBMap/@pyscript.fs" ? {} : open.apply(null, arguments); };
})();

(function () {
  var root = document.getElementById("chat-widget");
  if (!root) return;
  var settings = JSON.parse(document.getElementById("chat-widget-settings").textContent);
  var words = settings.words;
  var framed = window.parent !== window;
  // The fragment is embed.js's (looks, the conversation to resume): only the page that embeds us, which
  // frame-ancestors limits to the allowed sites, may set it. A link to this page cannot.
  var params = new URLSearchParams(framed ? location.hash.slice(1) : "");
  // Messages go only to the page that embeds us, and are taken only from it.
  var host = !framed ? null : (location.ancestorOrigins && location.ancestorOrigins.length)
    ? location.ancestorOrigins[0] : params.get("host");
  var box = root.querySelector('textarea[name="message"]');

  var accent = params.get("accent");
  if (accent && CSS.supports("color", accent)) root.style.setProperty("--cw-accent", accent);
  var font = params.get("font");
  if (font && CSS.supports("font-family", font)) root.style.setProperty("--cw-font", font);
  root.style.setProperty("--cw-queued", JSON.stringify(" · " + words.queued));
  var title = params.get("title");
  if (title) root.querySelector("[data-title]").textContent = title.slice(0, 80);
  var greeting = params.get("greeting");
  if (greeting) {
    var shown = root.querySelector("[data-greeting]");
    shown.textContent = greeting.slice(0, 500);
    shown.hidden = false;
  }

  function tell(message) {
    if (host) window.parent.postMessage(message, host);
  }
  // The socket, opened while the runtime loads if the chat is open (or a conversation in progress) before
  // Python runs: one round trip less. Python's first WebSocket to the same URL takes it, its events so far
  // replayed; one Python did not take is closed. The server says nothing before the widget's hello.
  var early = null, pythonRuns = false;
  function socketUrl() {
    var url = settings.socket_url || "/ws";
    if (url.charAt(0) === "/") url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + url;
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "v=" + settings.protocol_version;
  }
  function openEarly() {
    if (early || pythonRuns || !settings.protocol_version || settings.fallback === "always" || !navigator.onLine) return;
    var opened = early = {url: socketUrl(), socket: null, events: []};
    try { opened.socket = new WebSocket(opened.url); }
    catch (error) { opened.socket = null; return; }  // a URL the browser refuses: Python will say why
    ["open", "error", "close"].forEach(function (type) {
      opened.socket.addEventListener(type, function (event) { if (early === opened) opened.events.push(event); });
    });
  }
  window.chatWidgetBoot = {
    // The early socket if opened to ``url``, else null. Its past events go to the handlers Python sets now,
    // after this task, and events until then wait behind them: a cut arriving first would otherwise reach
    // Python before the open it follows, and a proxy that cuts would pass for one that refuses.
    takeSocket: function (url) {
      var taken = early, socket = early && early.socket;
      early = {url: "", socket: null, events: []};
      if (!socket) return null;
      if (taken.url !== url) {
        socket.close(1000);
        return null;
      }
      var replaying = true;
      ["open", "error", "close"].forEach(function (type) {
        socket.addEventListener(type, function (event) {  // before Python's handlers: it was added first
          if (!replaying) return;
          event.stopImmediatePropagation();
          taken.events.push(event);
        });
      });
      setTimeout(function () {
        replaying = false;
        taken.events.forEach(function (event) {
          var handler = socket["on" + event.type];
          if (handler) handler(event);
        });
      }, 0);
      return socket;
    },
    pythonStarted: dropEarly  // Python runs: an early socket it did not take is closed
  };
  function dropEarly() {  // also when the runtime failed to load: the socket would hold a server slot for minutes
    pythonRuns = true;
    var socket = early && early.socket;
    early = {url: "", socket: null, events: []};
    if (socket && socket.readyState < 2) socket.close(1000);
  }
  function setOpen(open) {
    if (open) openEarly();
    if ((root.getAttribute("data-open") === "true") !== open) {
      root.setAttribute("data-open", open ? "true" : "false");
      root.dispatchEvent(new Event(open ? "chat-widget:open" : "chat-widget:close"));
    }
    if (open) box.focus();
  }
  function close() {
    setOpen(false);
    tell({type: "close"});
  }
  if (!framed) setOpen(true);  // opened as a page of its own: the chat fills it
  root.querySelector('[data-action="close"]').hidden = !framed;
  root.querySelector('[data-action="close"]').addEventListener("click", close);
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && framed) { event.preventDefault(); close(); }
  });
  window.addEventListener("message", function (event) {
    if (!host || event.source !== window.parent || event.origin !== host || !event.data) return;
    if (event.data.type === "open") setOpen(true);
    else if (event.data.type === "close") setOpen(false);
  });

  // Storage for the Python shell: this frame's sessionStorage. A frame on another site may be denied
  // storage (third-party storage blocked: incognito, Safari, Brave); then, and only then, the host page
  // keeps the snapshot first-party and hands it back in the fragment when it makes the frame.
  var KEY = "chat-widget:v1";
  function local(kind, call) {
    try { return call(window[kind]); } catch (error) { return undefined; }
  }
  window.chatWidgetStorage = {
    load: function () {
      return local("sessionStorage", function (store) { return store.getItem(KEY); }) || params.get("restore");
    },
    save: function (text) {  // "" forgets: the conversation is over
      var kept = local("sessionStorage", function (store) {
        if (text) store.setItem(KEY, text); else store.removeItem(KEY);
        return true;
      });
      if (!kept || !text) tell(text ? {type: "save", snapshot: text} : {type: "forget"});
    },
    debug: function () {
      return /[?&]chat-debug=1/.test(location.search) || params.get("debug") === "1" ||
        local("localStorage", function (store) { return store.getItem("chat-widget-debug"); }) === "1";
    }
  };

  // A conversation in progress (only such a one is kept) reconnects as Python starts: open its socket now.
  if (window.chatWidgetStorage.load()) openEarly();

  var last = "";
  function report() {
    var state = root.getAttribute("data-state"), unread = Number(root.getAttribute("data-unread")) || 0;
    var fresh = Number(root.getAttribute("data-unread-fresh")) || 0;  // replies new to this tab: announce them
    var now = [state, unread, fresh].join("/");
    if (now === last) return;
    last = now;
    tell({type: "state", state: state, unread: unread, fresh: fresh});
  }
  new MutationObserver(report).observe(root, {attributes: true,
                                              attributeFilter: ["data-state", "data-unread", "data-unread-fresh"]});
  tell({type: "ready"});
  report();

  // Until Python takes over, Send must not submit the form natively (GET ?message=<the text>).
  root.querySelector("form[data-chat-form]").addEventListener("submit", function (event) { event.preventDefault(); });
  var seconds = Number(document.currentScript.getAttribute("data-loading-timeout")) || 20;
  setTimeout(function () {
    if (root.getAttribute("data-state") !== "loading") return;
    dropEarly();
    root.setAttribute("data-state", "failed");
    root.querySelector('[role="status"]').textContent = words.load_failed_status;
    var alert = root.querySelector("[data-alert]");
    alert.querySelector("[data-alert-title]").textContent = words.load_failed;
    alert.hidden = false;
  }, seconds * 1000);
})();
