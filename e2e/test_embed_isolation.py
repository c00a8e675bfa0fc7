"""The embedded widget and its host page leave each other alone, and the chat server decides who embeds.

Every host page here is on another site than the chat server: the host at ``http://127.0.0.1:A``
(``HostSite``), the chat server at ``http://localhost:B`` (``chat_url``), started once for the module
with ``--allow-origin`` for the host. A second host site, not allowed, plays the stranger that copied
the snippet. What is checked is what a visitor or a site owner would notice: pixels of the launcher
and the panel, the host page's globals, styles, registry, console and storage, sockets, requests.
"""

import base64
import json
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect

from host_site import HostSite, chat_url, page_html, snippet
from server_process import ServerProcess
from widget_page import FRAME, WIDGET, chat, launcher, load, message_box, open_panel, root, wait_host_state

QUIET_ICON = '<link rel="icon" href="data:,">'  # no /favicon.ico request, so no 404 line in the console
SHOP = ('<header><h1>Lamps and rugs</h1><p>Hand-made, since 1987.</p></header>\n'
        '<section><h2>Offers</h2><ol><li>Brass lamp</li><li>Wool rug</li></ol>\n'
        '<form><textarea aria-label="Note"></textarea><button type="button">Add to cart</button></form></section>\n'
        '<div role="status">3 items in your cart</div>\n')
VISITOR = '[data-author="visitor"]'
CONSULTANT = '[data-author="consultant"]'
QUESTION, ANSWER = "What are your opening hours?", "Monday to Saturday"

# Everything a careless or hostile site stylesheet does to the elements the widget is made of.
HOSTILE_CSS = """
*, *::before, *::after { box-sizing: content-box !important; margin: 7px !important; padding: 5px !important;
  border: 3px dashed #e00 !important; border-radius: 0 !important;
  font: italic 900 23px/3 "DejaVu Serif", fantasy !important;
  letter-spacing: .3em !important; word-spacing: 1em !important; text-transform: uppercase !important;
  color: #0a0 !important; background: #ffd !important; box-shadow: 0 0 0 4px #00f !important;
  outline: 2px dotted #f0f !important; --accent: #e00 !important; cursor: wait !important; }
*::before, *::after { content: "HOSTILE" !important; }
div::before, div::after { position: fixed !important; inset: auto 0 0 auto !important; width: 120px !important;
  height: 120px !important; z-index: 2147483647 !important; background: #f00 !important; }
html { font-size: 40px !important; line-height: 5 !important; direction: rtl !important; color-scheme: dark !important;
  writing-mode: horizontal-tb; text-align: justify; }
body { transform: translateX(2px) !important; filter: hue-rotate(120deg) saturate(3) !important; zoom: 1.3;
  contain: paint; perspective: 10px; overflow: hidden; height: 200vh; }
header, section, form, button, textarea, p, ol, li, span, svg, path, [role=status], iframe {
  display: block !important; position: static !important; width: 50px !important; height: 50px !important;
  max-width: 10px !important; visibility: visible !important; opacity: .5 !important;
  transform: rotate(7deg) !important; fill: #0f0 !important; }
div { position: relative !important; inset: 3px !important; z-index: 1 !important; display: none !important;
  width: 1px !important; height: 1px !important; overflow: hidden !important; pointer-events: none !important; }
div:not(#a):not(#b):not(#c) { transform: scale(.2) !important; filter: blur(3px) invert(1) !important; }
button { all: unset !important; } button:hover, button:focus { background: #f00 !important; }
iframe { display: none !important; border: 20px solid #000 !important; }
"""

# The custom elements PyScript defines (both script types, and its plugins' elements).
PYSCRIPT_ELEMENTS = ["py-script", "mpy-script", "py-config", "mpy-config", "script-py", "script-mpy",
                     "py-terminal", "mpy-terminal", "py-editor", "mpy-editor", "py-game", "mpy-game"]

# Compares two PNG screenshots in the browser (no imaging library in the venv): counts the pixels that
# differ by more than `tolerance` in any channel, inside the widget's shape (a circle for the
# launcher, a rectangle without its rounded corners for the panel): outside it, the host page's own
# background shows through, and that is the host's to change.
PIXEL_DIFF = """async ([first, second, shape, tolerance]) => {
  async function pixels(base64) {
    const blob = await (await fetch("data:image/png;base64," + base64)).blob();
    const bitmap = await createImageBitmap(blob);
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d");
    context.drawImage(bitmap, 0, 0);
    return context.getImageData(0, 0, bitmap.width, bitmap.height);
  }
  const a = await pixels(first), b = await pixels(second);
  if (a.width !== b.width || a.height !== b.height) {
    return {size: [a.width, a.height, b.width, b.height], differing: -1};
  }
  const w = a.width, h = a.height, inset = shape === "circle" ? 0 : 14;
  let differing = 0, compared = 0;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    if (shape === "circle") {
      const dx = x + .5 - w / 2, dy = y + .5 - h / 2;
      if (dx * dx + dy * dy > (w / 2 - 2) * (w / 2 - 2)) continue;
    } else if ((x < inset || x >= w - inset) && (y < inset || y >= h - inset)) continue;
    compared++;
    const i = (y * w + x) * 4;
    for (let c = 0; c < 3; c++) if (Math.abs(a.data[i + c] - b.data[i + c]) > tolerance) { differing++; break; }
  }
  return {size: [w, h], differing, compared};
}"""

# What a page carries that a script could have added: own globals, style sheets, elements.
HOST_FOOTPRINT = """(names) => ({
  globals: Object.getOwnPropertyNames(window),
  styleSheets: document.styleSheets.length,
  adoptedStyleSheets: document.adoptedStyleSheets.length,
  customElements: names.filter((name) => customElements.get(name) !== undefined),
  elements: [...document.querySelectorAll("*")].map((e) => e.tagName),
  styles: ["html", "body", "h1", "p", "li", "button", "textarea", "[role=status]"].map((selector) => {
    const style = getComputedStyle(document.querySelector(selector));
    return selector + " " + [...style].map((name) => name + ":" + style.getPropertyValue(name)).join(";");
  }),
})"""


@pytest.fixture(scope="module")
def site():
    with HostSite() as host:
        yield host


@pytest.fixture(scope="module")
def stranger():
    """A site the chat server does not allow."""
    with HostSite() as host:
        yield host


@pytest.fixture(scope="module")
def chat_server(site):
    """One chat server for the module: it allows ``site`` and nobody else."""
    server = ServerProcess("--allow-origin", site.origin, "--store", "memory").start()
    yield server
    server.stop()


class Watch:
    """What a page does that a site owner could see: console lines (not debug), page errors, sockets
    (every frame's) and requests."""

    def __init__(self, page):
        self.console, self.errors, self.sockets, self.requests = [], [], [], []
        page.on("console", lambda message: self._console(message))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("websocket", lambda socket: self.sockets.append(socket.url))
        page.on("request", lambda request: self.requests.append(request.url))

    def _console(self, message):
        if message.type != "debug":  # PyScript's "PyScript Ready"; hidden at the console's default level
            self.console.append(f"{message.type}: {message.text}")


def shop_page(site, path, server, head="", body=SHOP, **attributes):
    return site.page(path, page_html(body + snippet(server, **attributes), head=QUIET_ICON + head))


def ask(frame):
    """The visitor asks a question through the widget and gets the consultant's answer."""
    frame.get_by_role("textbox", name="Your message").fill(QUESTION)
    frame.get_by_role("button", name="Send").click()
    expect(frame.locator(VISITOR)).to_have_text([QUESTION])
    expect(frame.locator(CONSULTANT).last).to_contain_text(ANSWER)


def opened_and_connected(page):
    """Click the launcher, wait for `connected`; returns the widget's frame."""
    frame = open_panel(page)
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "connected")
    wait_host_state(page, "connected")
    return frame


# ---- 1. the host's styles do not reach the widget ---------------------------------------------------

def test_hostile_stylesheet_changes_nothing_in_the_widget(site, chat_server, browser):
    """With a stylesheet that restyles every element (!important, fonts, box-sizing, direction, color
    scheme, pseudo-elements, a transform, filter and zoom on <body>), the launcher and the open,
    connected panel have the same place, size and pixels as on a plain page."""
    site.page("/hostile.css", HOSTILE_CSS, content_type="text/css; charset=utf-8")
    plain = shop_page(site, "/plain.html", chat_server)
    hostile = shop_page(site, "/hostile.html", chat_server, head='<link rel="stylesheet" href="/hostile.css">')
    scratch = browser.new_page()  # compares the screenshots
    # Same viewport, no animation, a fresh visitor (no conversation to restore) for both pages.
    contexts = [browser.new_context(viewport={"width": 1000, "height": 700}, reduced_motion="reduce") for _ in "ab"]
    try:
        pages = [context.new_page() for context in contexts]
        watches = [Watch(page) for page in pages]
        for page, url in zip(pages, (plain, hostile)):
            load(page, url)
        closed = [(launcher(page).bounding_box(), launcher(page).screenshot(animations="disabled")) for page in pages]
        assert closed[1][0] == closed[0][0], "the launcher moved or changed size"
        assert_same_pixels(scratch, closed[0][1], closed[1][1], "circle", "the launcher")

        opened = []
        for page in pages:
            opened_and_connected(page)
            panel = page.locator(FRAME)
            expect(panel).to_be_visible()
            expect(page.frame_locator(FRAME).get_by_role("status")).to_have_text("Connected")
            opened.append((panel.bounding_box(), panel.screenshot(animations="disabled", caret="hide")))
        assert opened[1][0] == opened[0][0], "the panel moved or changed size"
        assert_same_pixels(scratch, opened[0][1], opened[1][1], "panel", "the open panel")
        assert [watch.errors for watch in watches] == [[], []]
    finally:
        for context in contexts:
            context.close()
        scratch.close()


def assert_same_pixels(scratch, expected, actual, shape, what):
    encode = lambda png: base64.b64encode(png).decode("ascii")  # noqa: E731
    diff = scratch.evaluate(PIXEL_DIFF, [encode(expected), encode(actual), shape, 0])
    assert diff["differing"] == 0, f"{what} looks different under the hostile stylesheet: {diff}"


# ---- 2. the widget does not reach into the host page ------------------------------------------------

def test_widget_adds_nothing_to_the_host_page_but_chatWidget(site, chat_server, page):
    """The same page without and with the snippet, the widget connected and a question answered:
    the only new global is `chatWidget`, no custom element is registered, no style sheet added, the
    page's own elements keep their computed styles, and the console stays silent."""
    bare = site.page("/bare.html", page_html(SHOP, head=QUIET_ICON))
    embedded = shop_page(site, "/embedded.html", chat_server)
    watch = Watch(page)
    page.goto(bare)
    before = page.evaluate(HOST_FOOTPRINT, PYSCRIPT_ELEMENTS)

    load(page, embedded)
    ask(opened_and_connected(page))
    after = page.evaluate(HOST_FOOTPRINT, PYSCRIPT_ELEMENTS)

    new_globals = set(after["globals"]) - set(before["globals"])
    # "0": a page's frames are indexed on window (window[0]); every iframe, any vendor's, adds one.
    assert new_globals - {"0"} == {"chatWidget"}
    assert set(before["globals"]) - set(after["globals"]) == set()
    assert after["customElements"] == [] and before["customElements"] == []
    assert (after["styleSheets"], after["adoptedStyleSheets"]) == (before["styleSheets"], before["adoptedStyleSheets"])
    # The page's own elements are untouched: after them come the snippet's <script> and one element of
    # the widget's own (the shadow root's host).
    assert after["elements"][:len(before["elements"])] == before["elements"]
    assert after["elements"][len(before["elements"]):] == ["SCRIPT", "DIV"]
    assert after["styles"] == before["styles"]
    assert watch.console == [] and watch.errors == []


# ---- 3. a host page with a PyScript of its own --------------------------------------------------------

MICROPYTHON = "/node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"
HOST_PYTHON = """<p id="host-python">Host Python has not run</p>
<script type="mpy" config='{{"interpreter": "{interpreter}"}}'>
from pyscript import document
document.getElementById("host-python").textContent = "Host Python ran on PyScript {label}"
</script>
"""


@pytest.mark.parametrize("label,core", [
    ("0.7.31", "/node_modules/@pyscript/core/dist/core.js"),  # ours (package-lock.json)
    ("0.7.20", "/node_modules/pyscript-core-other/dist/core.js"),  # another release
])
def test_host_page_with_its_own_pyscript(label, core, site, chat_server, page):
    """A shop that runs its own PyScript (ours or another release) keeps working: its Python writes
    into its page, and a visitor chats through the widget on the same page."""
    url = site.page(f"/pyscript-{label}.html", page_html(
        SHOP + HOST_PYTHON.format(label=label, interpreter=MICROPYTHON) + snippet(chat_server),
        head=QUIET_ICON + f'<script type="module" src="{core}"></script>'))
    watch = Watch(page)
    load(page, url)
    expect(page.locator("#host-python")).to_have_text(f"Host Python ran on PyScript {label}", timeout=15000)
    ask(opened_and_connected(page))
    assert watch.errors == []
    assert [line for line in watch.console if line.startswith("error")] == []


# ---- 4. a host page with a strict Content-Security-Policy ----------------------------------------------

# Every CSP violation in any frame, as a console line (the listener is in each frame before its scripts).
REPORT_VIOLATIONS = """document.addEventListener("securitypolicyviolation", (event) => {
  console.error("CSP violation: " + event.violatedDirective + " blocked " + event.blockedURI);
});"""


def strict_policy(server, without=None):
    """The host page's policy with exactly the directives docs/embedding.md lists for the widget."""
    origin = chat_url(server).rstrip("/")
    directives = {"default-src": "'none'", "script-src": origin, "connect-src": origin, "frame-src": origin,
                  "style-src": "'self'"}
    directives.pop(without, None)
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def csp_page(site, server, path, without=None):
    site.page("/shop.css", "body { font: 16px/1.5 Georgia, serif; margin: 2rem; }", content_type="text/css")
    html = page_html(SHOP + snippet(server), head='<link rel="stylesheet" href="/shop.css">')
    return site.page(path, html, headers={"Content-Security-Policy": strict_policy(server, without)})


def violations(watch):
    return [line for line in watch.console if "Content Security Policy" in line or "CSP violation" in line]


def test_strict_csp_host_page_needs_only_the_documented_directives(site, chat_server, page):
    """Under `default-src 'none'` plus script-src, connect-src and frame-src for the chat server
    (no 'unsafe-eval', no 'unsafe-inline'), nothing is blocked and a visitor chats."""
    policy = strict_policy(chat_server)
    assert "unsafe" not in policy
    page.add_init_script(REPORT_VIOLATIONS)
    watch = Watch(page)
    load(page, csp_page(site, chat_server, "/strict.html"))
    ask(opened_and_connected(page))
    assert violations(watch) == []
    assert watch.errors == []


@pytest.mark.parametrize("without", ["frame-src", "script-src", "connect-src"])
def test_each_documented_csp_directive_is_needed(without, site, chat_server, page):
    """Drop one of the listed directives and the browser blocks something of the widget's; without
    frame-src the visitor gets no chat at all."""
    page.add_init_script(REPORT_VIOLATIONS)
    watch = Watch(page)
    page.goto(csp_page(site, chat_server, f"/strict-without-{without}.html", without))
    page.wait_for_function("() => document.readyState === 'complete'")
    if without == "script-src":
        wait_console(page, watch, lambda line: "script-src" in line)
        expect(launcher(page)).to_have_count(0)
        assert page.evaluate("() => typeof window.chatWidget") == "undefined"
    elif without == "frame-src":
        launcher(page).click()
        wait_console(page, watch, lambda line: "frame-src" in line)
        expect(root(page)).to_have_count(0)  # the panel holds the browser's error page, not the chat
        # ... and the site's owner is told which directive to add, once.
        told = wait_console(page, watch, lambda line: line.startswith("error: Chat widget:") and "did not start" in line)
        assert len(told) == 1 and f"frame-src {chat_url(chat_server).rstrip('/')}" in told[0], told
        assert watch.sockets == []
    else:
        # The site check (/ws-check) is blocked. The chat itself would still open (its socket is under the
        # frame's own policy), but a refused site's owner would get no line naming --allow-origin.
        wait_console(page, watch, lambda line: "connect-src" in line and "/ws-check" in line)
    assert violations(watch), f"nothing was blocked without {without}"


def wait_console(page, watch, predicate, timeout=10000):
    """Wait until a console line (as ``Watch`` writes it) satisfies ``predicate``; returns those lines."""
    if not any(predicate(line) for line in watch.console):
        page.wait_for_event("console", lambda message: predicate(f"{message.type}: {message.text}"), timeout=timeout)
    return [line for line in watch.console if predicate(line)]


# ---- 5. the chat server decides which sites may embed ---------------------------------------------

def test_refused_site_gets_no_chat_and_one_console_line(stranger, chat_server, page):
    """A site that is not in --allow-origin copied the snippet: the launcher goes away, the API says
    `refused`, no socket is opened, and the console has one line naming the site and the setting."""
    url = shop_page(stranger, "/copied.html", chat_server)
    watch = Watch(page)
    page.goto(url)
    wait_host_state(page, "refused")
    page.wait_for_function("() => document.readyState === 'complete'")
    expect(launcher(page)).to_have_count(0)
    expect(page.locator(FRAME)).to_have_count(0)
    assert len(watch.console) == 1, watch.console
    line = watch.console[0]
    assert line.startswith("error: ") and stranger.origin in line and "--allow-origin " + stranger.origin in line
    assert watch.sockets == []
    assert not [url for url in watch.requests if "/embed/frame" in url or "/ws?" in url]


def test_refused_site_cannot_frame_the_chat_directly(site, stranger, chat_server, page):
    """A stranger that frames the chat server's widget page itself gets no chat (the server's
    frame-ancestors), while the allowed site framing the same page does."""
    frame_url = chat_url(chat_server).rstrip("/") + "/embed/frame?lang=en"
    html = page_html(f'<iframe name="direct" title="Chat" src="{frame_url}"></iframe>', head=QUIET_ICON)
    watch = Watch(page)
    page.goto(stranger.page("/framed.html", html))
    wait_console(page, watch, lambda line: "frame-ancestors" in line)
    expect(page.frame_locator('iframe[name="direct"]').locator(WIDGET)).to_have_count(0)
    assert watch.sockets == []

    page.goto(site.page("/framed.html", html))
    expect(page.frame_locator('iframe[name="direct"]').locator(WIDGET)).to_have_attribute("data-state", "idle")


# ---- 6. nothing stored and no socket until the visitor opens the chat --------------------------------

STORAGE = """() => {
  const read = (kind) => { try { return Object.keys(window[kind]); } catch (error) { return []; } };
  return {local: read("localStorage"), session: read("sessionStorage")};
}"""


def test_nothing_stored_and_no_socket_until_opened_then_a_reload_resumes(site, chat_server, page):
    """A page view where the visitor does not open the chat stores nothing and opens no socket; once
    they chatted, a reload replays the conversation and reconnects by itself, the panel still closed."""
    watch = Watch(page)
    frame = load(page, shop_page(site, "/visit.html", chat_server))
    wait_host_state(page, "idle")
    assert watch.sockets == []
    assert page.context.cookies() == []
    assert page.evaluate(STORAGE) == {"local": [], "session": []}
    assert frame.evaluate(STORAGE) == {"local": [], "session": []}

    ask(opened_and_connected(page))
    assert len(watch.sockets) == 1  # the frame's socket: this watch would have seen one before opening
    assert page.context.cookies() == []
    # Only now, and first-party: the host page keeps the conversation for the frame (denied storage here).
    assert page.evaluate(STORAGE) == {"local": [], "session": ["chat-widget:" + chat_url(chat_server).rstrip("/")]}

    page.reload()
    expect(root(page)).to_have_attribute("data-state", "connected")
    wait_host_state(page, "connected")
    assert page.evaluate("() => window.chatWidget.isOpen") is False
    expect(root(page)).to_have_attribute("data-open", "false")
    expect(launcher(page)).to_be_visible()
    frame = chat(page)
    expect(frame.locator(VISITOR)).to_have_text([QUESTION])
    expect(frame.locator(CONSULTANT).last).to_contain_text(ANSWER)
    assert len(watch.sockets) == 2


STORED_ANYWHERE = """async () => {
  const read = (kind) => { try { return Object.keys(window[kind]); } catch (error) { return []; } };
  let databases = [];
  try { databases = (await indexedDB.databases()).map((database) => database.name); } catch (error) {}
  return {local: read("localStorage"), session: read("sessionStorage"), indexeddb: databases};
}"""


def test_on_the_chat_servers_own_site_too_nothing_is_stored_until_a_conversation_exists(chat_server, page):
    """The demo page's frame is same-site, so the browser grants it storage: still nothing (not even
    PyScript's IndexedDB) before the visitor opens the chat; opening and closing without a word leaves
    nothing and the next page view opens no socket; a conversation is kept by the frame itself, not
    handed to the host page."""
    watch = Watch(page)
    frame = load(page, chat_server.url)
    nothing = {"local": [], "session": [], "indexeddb": []}
    assert frame.evaluate(STORED_ANYWHERE) == nothing and page.evaluate(STORED_ANYWHERE) == nothing

    opened_and_connected(page)
    page.keyboard.press("Escape")
    expect(launcher(page)).to_be_focused()
    assert frame.evaluate(STORED_ANYWHERE) == nothing and page.evaluate(STORED_ANYWHERE) == nothing
    page.reload()
    expect(root(page)).to_have_attribute("data-state", "idle")
    assert len(watch.sockets) == 1  # the one the visitor opened; none for the page view after it

    frame = opened_and_connected(page)
    ask(frame)
    kept = {"local": [], "session": ["chat-widget:v1"], "indexeddb": []}
    assert frame.evaluate(STORED_ANYWHERE) == kept
    # The same origin shares the tab's sessionStorage: that key is the frame's own. The host page's copy
    # ("chat-widget:<server>") is made only when the frame has no storage.
    assert page.evaluate(STORED_ANYWHERE) == kept


def test_a_link_to_the_frame_page_cannot_plant_a_conversation_or_words(chat_server, browser):
    """The frame page's fragment is for embed.js only. A link to /embed/frame#restore=<someone's
    session>&greeting=<a phishing line> opened as a page resumes nothing and shows nothing of it."""
    owner = browser.new_page()
    frame = load(owner, chat_server.url)
    ask(opened_and_connected(owner))
    planted = frame.evaluate("() => sessionStorage.getItem('chat-widget:v1')")
    assert planted and json.loads(planted)["session"]
    victim = browser.new_context().new_page()
    link = chat_server.url.rstrip("/") + "/embed/frame#" + urlencode(
        {"restore": planted, "greeting": "Please confirm your card number", "title": "Bank"})
    victim.goto(link)
    expect(victim.locator(WIDGET)).to_have_attribute("data-state", "connected")
    expect(victim.locator("[data-greeting]")).to_be_hidden()
    expect(victim.locator("[data-title]")).to_have_text("Ask our consultant")
    expect(victim.locator(VISITOR)).to_have_count(0)
    assert victim.locator(CONSULTANT).count() == 0
    victim.context.close()
    owner.close()


# ---- 7. data-load="click": nothing heavy until the visitor reaches for the launcher -------------------

def test_load_on_click_requests_nothing_before_hover(site, chat_server, page):
    """With data-load="click" the page asks the chat server for /embed.js and /ws-check only; a hover
    on the launcher makes the frame, and a click opens the chat and connects."""
    server = chat_url(chat_server).rstrip("/")
    watch = Watch(page)
    with page.expect_response(lambda response: "/ws-check" in response.url):
        page.goto(shop_page(site, "/lazy.html", chat_server, load="click"))
    page.wait_for_load_state("networkidle")
    paths = [url[len(server):].split("?")[0] for url in watch.requests if url.startswith(server)]
    assert paths == ["/embed.js", "/ws-check"]
    expect(page.locator(FRAME)).to_have_count(0)
    expect(launcher(page)).to_be_visible()

    launcher(page).hover()
    expect(page.locator(FRAME)).to_have_count(1)
    expect(root(page)).to_have_attribute("data-state", "idle")
    expect(root(page)).to_have_attribute("data-open", "false")
    assert watch.sockets == []

    launcher(page).click()
    expect(root(page)).to_have_attribute("data-state", "connected")
    expect(message_box(page)).to_be_focused()


# ---- 8. the JavaScript API ----------------------------------------------------------------------------

def test_javascript_api_opens_closes_and_reports_state(site, chat_server, page):
    """`chatWidget.open()` opens and connects, `.state` follows, "statechange" events tell each step,
    and `chatWidget.close()` closes the panel and brings the launcher back."""
    load(page, shop_page(site, "/api.html", chat_server))
    assert page.evaluate("() => [window.chatWidget.state, window.chatWidget.isOpen]") == ["idle", False]
    page.evaluate("""() => {
      window.seenStates = [];
      window.chatWidget.addEventListener("statechange", (event) => window.seenStates.push(event.detail));
    }""")

    page.evaluate("() => window.chatWidget.open()")
    wait_host_state(page, "connected")
    expect(page.locator(FRAME)).to_be_visible()
    expect(launcher(page)).to_be_hidden()
    expect(root(page)).to_have_attribute("data-open", "true")
    seen = page.evaluate("() => window.seenStates")
    assert seen[0] == {"state": "idle", "open": True, "unread": 0, "previous": "idle"}
    assert [event["state"] for event in seen][-2:] == ["connecting", "connected"]
    assert all(event["open"] for event in seen)

    page.evaluate("() => window.chatWidget.close()")
    expect(page.locator(FRAME)).to_be_hidden()
    expect(launcher(page)).to_be_visible()
    expect(root(page)).to_have_attribute("data-open", "false")
    assert page.evaluate("() => [window.chatWidget.state, window.chatWidget.isOpen]") == ["connected", False]
    assert page.evaluate("() => window.seenStates.at(-1)") == {"state": "connected", "open": False, "unread": 0,
                                                               "previous": "connected"}
