// The frame's only JavaScript, before and beside Python: it carries the host page's open and close
// (from embed.js) to the widget and tells the host the widget's state and unread count, applies the
// snippet's title, greeting, accent and font before the first paint, keeps Send from submitting natively,
// and says so if the runtime never starts (Python cannot report that).
(function () {
  // PyScript opens the IndexedDB "IDBMap/@pyscript.fs" as it loads (for fs.mount, which the widget does not
  // use). A frame on another site may be denied storage (third-party storage blocked); PyScript's error
  // handler then throws twice into the console. Where storage is denied, that one open never answers.
  try {
    window.localStorage.length;
  } catch (denied) {
    var open = indexedDB.open.bind(indexedDB);
    indexedDB.open = function (name) { return name === "IDBMap/@pyscript.fs" ? {} : open.apply(null, arguments); };
  }
})();

(function () {
  var root = document.getElementById("chat-widget");
  if (!root) return;
  var settings = JSON.parse(document.getElementById("chat-widget-settings").textContent);
  var words = settings.words;
  var params = new URLSearchParams(location.hash.slice(1));
  var framed = window.parent !== window;
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
  function setOpen(open) {
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

  // Storage for the Python shell. A frame on another site may be denied its own storage (third-party
  // storage blocked: incognito, Safari, Brave), so the host page keeps a copy in its sessionStorage,
  // written only once a conversation exists, and hands it back in the fragment when it makes the frame.
  var KEY = "chat-widget:v1";
  function tryStorage(kind, call) {
    try { return call(window[kind]); } catch (error) { return null; }
  }
  window.chatWidgetStorage = {
    load: function () {
      return params.get("restore") || tryStorage("sessionStorage", function (store) { return store.getItem(KEY); });
    },
    save: function (text) {
      tryStorage("sessionStorage", function (store) { store.setItem(KEY, text); });
      tell({type: "save", snapshot: text});
    },
    debug: function () {
      return /[?&]chat-debug=1/.test(location.search) || params.get("debug") === "1" ||
        tryStorage("localStorage", function (store) { return store.getItem("chat-widget-debug"); }) === "1";
    }
  };

  var last = "";
  function report() {
    var state = root.getAttribute("data-state"), unread = Number(root.getAttribute("data-unread")) || 0;
    if (state + "/" + unread === last) return;
    last = state + "/" + unread;
    tell({type: "state", state: state, unread: unread});
  }
  new MutationObserver(report).observe(root, {attributes: true, attributeFilter: ["data-state", "data-unread"]});
  tell({type: "ready"});
  report();

  // Until Python takes over, Send must not submit the form natively (GET ?message=<the text>).
  root.querySelector("form[data-chat-form]").addEventListener("submit", function (event) { event.preventDefault(); });
  var seconds = Number(document.currentScript.getAttribute("data-loading-timeout")) || 20;
  setTimeout(function () {
    if (root.getAttribute("data-state") !== "loading") return;
    root.setAttribute("data-state", "failed");
    root.querySelector('[role="status"]').textContent = words.load_failed_status;
    var alert = root.querySelector("[data-alert]");
    alert.querySelector("[data-alert-title]").textContent = words.load_failed;
    alert.hidden = false;
  }, seconds * 1000);
})();
