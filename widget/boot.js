// The only JavaScript of the widget: it makes the launcher work from the first paint, before the
// Python runtime has loaded, and says so if the runtime never starts (Python cannot report that).
(function () {
  var root = document.getElementById("chat-widget");
  if (!root) return;
  var panel = root.querySelector(".cw-panel");
  var launcher = root.querySelector('[data-action="open"]');
  function setOpen(open) {
    panel.hidden = !open;
    root.setAttribute("data-open", open ? "true" : "false");
    launcher.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) { var box = root.querySelector('textarea[name="message"]'); if (box) box.focus(); }
  }
  launcher.addEventListener("click", function () { setOpen(panel.hidden); });
  // Until Python takes over, Send must not submit the form natively (GET /?message=<the text>).
  root.querySelector("form[data-chat-form]").addEventListener("submit", function (event) { event.preventDefault(); });
  root.querySelector('[data-action="close"]').addEventListener("click", function () {
    setOpen(false); launcher.focus();
  });
  var seconds = Number(document.currentScript.getAttribute("data-loading-timeout")) || 20;
  setTimeout(function () {
    if (root.getAttribute("data-state") !== "loading") return;
    root.setAttribute("data-state", "failed");
    root.querySelector('[role="status"]').textContent = "Chat could not start";
    var alert = root.querySelector("[data-alert]");
    alert.querySelector("[data-alert-title]").textContent =
      "The chat could not load in your browser. Please reload the page, or try another browser.";
    alert.hidden = false;
  }, seconds * 1000);
})();
