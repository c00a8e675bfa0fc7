// The chat widget's one tag for any site: <script src="https://CHAT-SERVER/embed.js" async></script>
//
// It puts a launcher button on the host page (in a shadow root, styled by constructed stylesheets and
// inline !important declarations, so the host's CSS cannot reach it and a strict CSP needs no
// 'unsafe-inline'), and the chat itself in an iframe served by the chat server: the Python runtime,
// its CSP and its storage never touch the host page. The frame is created after the host page's
// `load` (or on the first hover, focus or click with data-load="click"), so the widget never delays
// it. Host page and frame talk by postMessage, each checking the other's origin.
//
// Public API: window.chatWidget.open(), .close(), .state, .isOpen, .unread, and "statechange" events
// (event.detail: {state, open, unread, previous}). docs/embedding.md has the rest.
(function () {
  "use strict";
  if (window.chatWidget) return;  // the snippet twice on one page: the first one wins
  var script = document.currentScript;
  if (!script) return;
  var server = new URL(script.src, location.href).origin;
  var WORDS = /*LAUNCHER_WORDS*/{};
  var FRAME_PATH = /*FRAME_PATH*/"";

  function attr(name) { return (script.getAttribute("data-" + name) || "").trim(); }
  function known(tag) { return Object.prototype.hasOwnProperty.call(WORDS, tag); }
  function language() {
    var wanted = [attr("lang"), document.documentElement.lang].concat(navigator.languages || [navigator.language]);
    for (var i = 0; i < wanted.length; i++) {
      var tag = String(wanted[i] || "").toLowerCase();
      if (known(tag)) return tag;
      if (known(tag.split("-")[0])) return tag.split("-")[0];
    }
    return "en";
  }
  var lang = language(), words = WORDS[lang];
  var side = attr("position") === "left" || (attr("position") !== "right" && words.dir === "rtl") ? "left" : "right";
  // Looks: the tag's attributes, else the custom properties --chat-widget-accent and --chat-widget-font
  // of the page's root element as this script runs (the frame gets them in its URL's fragment).
  function look(name, property, kind) {
    var value = attr(name) || getComputedStyle(document.documentElement).getPropertyValue(property).trim();
    return value && window.CSS && CSS.supports(kind, value) ? value : "";
  }
  var accent = look("accent", "--chat-widget-accent", "color");
  var font = look("font", "--chat-widget-font", "font-family");
  var lazy = attr("load") === "click";

  var state = "loading", isOpen = false, unread = 0, fresh = 0, frame = null, frameReady = false, pending = null;
  // The conversation in progress, kept first-party only when the frame is denied storage of its own
  // (third-party storage blocked): written only by the frame, once a conversation exists ("" forgets it).
  var KEY = "chat-widget:" + server;
  function stored(value) {
    try {
      if (value === undefined) return sessionStorage.getItem(KEY);
      if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
    } catch (error) { /* storage disabled: a reload starts a new conversation */ }
    return null;
  }
  var api = new EventTarget();

  // ---- the launcher, at the first paint of this script ----------------------------------------------
  var host = document.createElement("div");
  var hostStyle = {all: "initial", position: "fixed", bottom: "0", width: "0", height: "0", "z-index": "2147483000",
                   display: "block", transform: "none", filter: "none", contain: "none", visibility: "visible"};
  hostStyle[side] = "0";
  for (var property in hostStyle) host.style.setProperty(property, hostStyle[property], "important");
  var shadow = host.attachShadow({mode: "open"});
  var sheet = new CSSStyleSheet();
  sheet.replaceSync([
    ":host { all: initial; }",
    // The host's `div::after { content: ... }` would draw on (and take clicks from) our launcher:
    // !important from inside a shadow tree beats the page's, even its !important.
    ":host::before, :host::after { content: none !important; display: none !important; }",
    ".cw-host { --accent: #2b4acb; font: 15px/1.4 var(--font, system-ui, sans-serif); }",
    ".launcher { all: initial; position: fixed; bottom: 20px; " + side + ": 20px; width: 60px; height: 60px; border-radius: 50%;",
    "  background: var(--accent); color: #fff; cursor: pointer; display: flex; align-items: center; justify-content: center;",
    "  box-shadow: 0 4px 14px rgba(0,0,0,.25); box-sizing: border-box; }",
    ".launcher:focus-visible { outline: 3px solid #1d2330; outline-offset: 3px; }",
    ".launcher[hidden] { display: none; }",
    ".launcher svg { width: 28px; height: 28px; fill: currentColor; }",
    ".badge { position: absolute; top: -4px; " + (side === "left" ? "left" : "right") + ": -4px; min-width: 22px; height: 22px;",
    "  padding: 0 6px; box-sizing: border-box; border-radius: 11px; background: #c62828; color: #fff;",
    "  font: 700 12px/22px system-ui, sans-serif; text-align: center; }",
    ".badge[hidden] { display: none; }",
    ".frame { all: initial; position: fixed; bottom: 20px; " + side + ": 20px; width: 380px; height: min(600px, calc(100vh - 40px));",
    "  max-width: calc(100vw - 40px); border: 0; border-radius: 12px; box-shadow: 0 8px 30px rgba(0,0,0,.25);",
    "  background: transparent; color-scheme: normal; visibility: hidden; display: block; }",
    ".frame.open { visibility: visible; }",
    "@media (max-width: 479px) { .frame { inset: 0; width: 100%; height: 100%; max-width: none; border-radius: 0; } }",
    "@media (prefers-reduced-motion: no-preference) { .frame.open { animation: rise .16s ease-out; } }",
    "@keyframes rise { from { opacity: 0; transform: translateY(12px); } to { opacity: 1; transform: none; } }",
    ".sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }"
  ].join("\n"));
  shadow.adoptedStyleSheets = [sheet];
  var box = document.createElement("div");
  box.className = "cw-host";
  // As declarations, never pasted into the stylesheet's text: a value like `red /*` must not end it.
  if (accent) box.style.setProperty("--accent", accent);
  if (font) box.style.setProperty("--font", font);
  box.dir = words.dir;
  box.lang = lang;
  var launcher = document.createElement("button");
  launcher.type = "button";
  launcher.className = "launcher";
  launcher.setAttribute("data-action", "open");
  launcher.setAttribute("aria-expanded", "false");
  launcher.appendChild(icon());
  var badge = document.createElement("span");
  badge.className = "badge";
  badge.setAttribute("aria-hidden", "true");
  badge.hidden = true;
  launcher.appendChild(badge);
  var announcer = document.createElement("p");
  announcer.className = "sr";
  announcer.setAttribute("aria-live", "polite");
  box.appendChild(launcher);
  box.appendChild(announcer);
  shadow.appendChild(box);
  label();
  // A child of <html>, after <body>: a transform, filter, zoom or contain on the host's <body> would make
  // it the launcher's containing block (moved, scaled, recoloured); on <html> no site does that.
  document.documentElement.appendChild(host);

  function icon() {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(ns, "path");
    path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z");
    svg.appendChild(path);
    return svg;
  }
  function unreadWords(count) {
    return (count === 1 ? words.unread_one : words.unread_other).replace("{count}", String(count));
  }
  function label() {
    launcher.setAttribute("aria-label", unread ? words.launcher + ", " + unreadWords(unread) : words.launcher);
    badge.textContent = unread > 99 ? "99+" : String(unread);
    badge.hidden = !unread;
  }

  // ---- the frame ----------------------------------------------------------------------------------
  function createFrame() {
    if (frame || state === "refused") return;
    frame = document.createElement("iframe");
    frame.className = "frame";
    frame.name = "chat-widget";
    frame.title = words.panel;
    // The diagnostics button copies to the clipboard.
    frame.allow = "clipboard-write";
    var looks = new URLSearchParams({host: location.origin});
    ["title", "greeting"].forEach(function (name) { if (attr(name)) looks.set(name, attr(name)); });
    if (accent) looks.set("accent", accent);
    if (font) looks.set("font", font);
    if (stored()) looks.set("restore", stored());
    if (/[?&]chat-debug=1/.test(location.search)) looks.set("debug", "1");
    // The looks travel in the fragment: never sent to the server, never part of a cache key.
    frame.src = server + FRAME_PATH + "?lang=" + encodeURIComponent(lang) + "#" + looks.toString();
    // The frame says "ready" while it parses, before its load event: a frame that loaded without
    // saying so is the browser's error page (the page's CSP has no frame-src for us, say). Say why once.
    frame.addEventListener("load", function () {
      setTimeout(function () {
        if (frameReady) return;
        console.error("Chat widget: the chat's frame from " + server + " did not start on this page. If the page " +
          "has a Content-Security-Policy, it needs frame-src " + server + " (and script-src, connect-src " + server +
          "); see docs/embedding.md.");
      }, 2000);
    }, {once: true});
    box.appendChild(frame);
  }
  function tell(message) {
    if (frame && frameReady) frame.contentWindow.postMessage(message, server);
    else pending = message;
  }
  window.addEventListener("message", function (event) {
    if (!frame || event.source !== frame.contentWindow || event.origin !== server || !event.data) return;
    var data = event.data;
    if (data.type === "ready") {
      frameReady = true;
      if (pending) { frame.contentWindow.postMessage(pending, server); pending = null; }
    } else if (data.type === "state") {
      // Each reply new to this tab is announced once; those replayed after a reload are only counted.
      var arrived = Number(data.fresh) || 0;
      if (arrived > fresh && !isOpen) {
        announcer.textContent = "";
        announcer.textContent = words.new_message;
      }
      fresh = arrived;
      unread = isOpen ? 0 : Number(data.unread) || 0;
      changed(String(data.state));
    } else if (data.type === "save" && typeof data.snapshot === "string") {
      stored(data.snapshot);
    } else if (data.type === "forget") {
      stored("");
    } else if (data.type === "close") {
      setOpen(false);
      launcher.focus();
    }
  });

  // ---- opening and closing ------------------------------------------------------------------------
  function setOpen(open) {
    if (state === "refused" || open === isOpen) return;
    isOpen = open;
    if (open) {
      createFrame();
      unread = 0;
      frame.classList.add("open");
      launcher.hidden = true;
      fitViewport();
      // Focus goes into the frame, which moves it to the message box. Only once the frame is ready: a
      // frame focused while its cross-site page still loads hands focus back to the host page when that
      // page arrives (Chromium), and the visitor's typing goes nowhere. A loading frame focuses its
      // message box itself when it gets the "open" queued for it.
      if (frameReady) frame.focus();
    } else if (frame) {
      frame.classList.remove("open");
      launcher.hidden = false;
    }
    launcher.setAttribute("aria-expanded", open ? "true" : "false");
    tell({type: open ? "open" : "close"});
    changed(state);
  }
  launcher.addEventListener("click", function () { setOpen(true); });
  if (lazy) {
    ["pointerenter", "focus", "touchstart"].forEach(function (name) {
      launcher.addEventListener(name, createFrame, {once: true, passive: true});
    });
  }

  // Phones: the panel fills the visual viewport, so the on-screen keyboard does not cover the message box.
  function fitViewport() {
    var viewport = window.visualViewport;
    if (!frame || !viewport) return;
    if (isOpen && window.innerWidth < 480) {
      frame.style.setProperty("height", viewport.height + "px", "important");
      frame.style.setProperty("top", viewport.offsetTop + "px", "important");
    } else {
      frame.style.removeProperty("height");
      frame.style.removeProperty("top");
    }
  }
  if (window.visualViewport) {
    window.visualViewport.addEventListener("resize", fitViewport);
    window.visualViewport.addEventListener("scroll", fitViewport);
  }

  function changed(next) {
    var before = state;
    state = next;
    label();
    api.dispatchEvent(new CustomEvent("statechange", {detail: {state: state, open: isOpen, unread: unread, previous: before}}));
  }

  // ---- which sites may embed: the chat server decides ---------------------------------------------
  function refuse(reason) {
    host.remove();
    changed("refused");
    console.error("Chat widget: the chat server " + server + " does not allow this site (" + location.origin + "): " +
      reason + ". To allow it, start the server with --allow-origin " + location.origin +
      " (or add it to CHAT_WIDGET_ALLOW_ORIGINS).");
  }
  function createFrameAfterLoad() {
    if (lazy && !stored()) return;  // a conversation in progress reconnects at page load, lazy or not
    if (document.readyState === "complete") createFrame();
    else window.addEventListener("load", createFrame, {once: true});
  }
  if (location.origin === server) {
    createFrameAfterLoad();
  } else {
    fetch(server + "/ws-check?origin=" + encodeURIComponent(location.origin), {credentials: "omit", cache: "no-store"})
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        if (answer.allowed === false) refuse(answer.reason || "origin not allowed");
        else createFrameAfterLoad();
      }, createFrameAfterLoad);  // no answer: make the frame anyway; it says what is wrong when opened  // unreachable now: the frame will say so when opened
  }

  api.open = function () { setOpen(true); };
  api.close = function () { setOpen(false); };
  Object.defineProperty(api, "state", {get: function () { return state; }});
  Object.defineProperty(api, "isOpen", {get: function () { return isOpen; }});
  Object.defineProperty(api, "unread", {get: function () { return unread; }});
  window.chatWidget = api;
})();
