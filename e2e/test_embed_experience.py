"""The visitor's experience of the embedded widget, on a host page from another origin.

The host site is ``http://127.0.0.1:A`` (``HostSite``), the chat server ``http://localhost:B``
(``chat_url``), started with ``--allow-origin`` for the host. Keyboard only, the unread badge, what
screen readers hear, reduced motion, phones, axe-core in every state, and languages and looks.
"""

import re

import pytest
from playwright.sync_api import expect

from host_site import HEBREW, ROOT, HostSite, chat_url, page_html, snippet, write_catalogue
from widget_page import FRAME, chat, launcher, root

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
VISITOR = '[data-author="visitor"]'
CONSULTANT = '[data-author="consultant"]'
# The shop around the widget: a link and a button before it, landmarks and a heading, as a tidy site has.
SHOP = ('<header><a href="#top">A shop</a></header>\n'
        '<main><h1>Garden tools</h1><p>Spades, rakes and hoes.</p><button type="button">Add to cart</button></main>\n')
# Records every non-empty text a live region takes, to count announcements.
RECORD = """(element) => {
  element.__said = [];
  new MutationObserver(() => { if (element.textContent) element.__said.push(element.textContent); })
    .observe(element, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture
def site():
    with HostSite() as host:
        yield host


@pytest.fixture
def embed(site, start_server):
    """Factory: a chat server that allows the host site, and a host page embedding it; returns (server, url)."""

    def make(*args, env=None, body=SHOP, page_lang="en", path="/shop.html", **attributes):
        server = start_server("--allow-origin", site.origin, "--store", "memory", *args, env=env)
        url = site.page(path, page_html(body + snippet(server, **attributes), lang=page_lang))
        return server, url

    return make


def announcer(page):
    """The host page's polite live region (in the launcher's shadow root)."""
    return page.locator('.cw-host p[aria-live="polite"]')


def frame_element(page):
    return page.locator(FRAME)


def open_connected(page, url):
    page.goto(url)
    launcher(page).click()
    frame = chat(page)
    expect(root(page)).to_have_attribute("data-state", "connected", timeout=15000)
    expect(frame.get_by_role("textbox")).to_be_focused()
    return frame


def ask(frame, text):
    box = frame.get_by_role("textbox")
    box.fill(text)
    box.press("Enter")
    expect(frame.locator(VISITOR).last).to_have_text(text)


def reply_done(frame, count=1):
    """The consultant's ``count``-th reply, once it is complete (no longer streaming)."""
    reply = frame.locator(CONSULTANT).nth(count - 1)
    expect(reply).to_be_visible(timeout=15000)
    expect(reply).not_to_have_attribute("data-streaming", "true", timeout=15000)
    return reply


# ---- keyboard ------------------------------------------------------------------------------------

def test_keyboard_only_open_send_close(embed, page):
    """Tab reaches the launcher, Enter opens with focus in the message box, Enter sends, Tab and
    Shift+Tab reach Send and Close, Escape closes and gives focus back to the launcher."""
    _, url = embed()
    page.goto(url)
    expect(root(page)).to_have_attribute("data-state", "idle", timeout=15000)
    # The page's own controls first, then the launcher (the hidden frame takes no focus).
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="A shop")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Add to cart")).to_be_focused()
    page.keyboard.press("Tab")
    expect(launcher(page)).to_be_focused()

    page.keyboard.press("Enter")
    frame = chat(page)
    box = frame.get_by_role("textbox", name="Your message")
    expect(box).to_be_focused()
    expect(root(page)).to_have_attribute("data-state", "connected", timeout=15000)
    page.keyboard.type("When are you open?")
    page.keyboard.press("Enter")
    expect(frame.locator(VISITOR)).to_have_text(["When are you open?"])
    expect(box).to_have_value("")

    page.keyboard.press("Tab")
    expect(frame.get_by_role("button", name="Send")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(box).to_be_focused()
    page.keyboard.press("Shift+Tab")
    close = frame.get_by_role("button", name="Close chat")
    expect(close).to_be_focused()

    page.keyboard.press("Escape")
    expect(frame_element(page)).to_be_hidden()
    expect(launcher(page)).to_be_focused()
    assert page.evaluate("() => window.chatWidget.isOpen") is False

    # The close button works from the keyboard too, and Enter on the launcher opens again.
    page.keyboard.press("Enter")
    expect(box).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(close).to_be_focused()
    page.keyboard.press("Enter")
    expect(frame_element(page)).to_be_hidden()
    expect(launcher(page)).to_be_focused()
    expect(launcher(page)).to_have_attribute("aria-expanded", "false")


def test_opening_while_the_frame_still_loads_still_puts_the_keys_in_the_message_box(embed, page):
    """A visitor quicker than the network: the launcher is pressed while the frame's page is still on
    its way. Once it is there, the keyboard is in the message box and typing reaches the chat."""
    _, url = embed()
    held = []
    # The frame's page has arrived, its script not yet (answered after the click).
    page.route(lambda address: "/widget/boot.js" in address, lambda route: held.append(route))
    page.goto(url)
    chat(page)
    page.wait_for_function("() => window.chatWidget.state === 'loading'")
    launcher(page).click()
    assert len(held) == 1
    held[0].continue_()
    frame = chat(page)
    box = frame.get_by_role("textbox", name="Your message")
    expect(root(page)).to_have_attribute("data-state", "connected", timeout=15000)
    expect(box).to_be_focused()
    page.keyboard.type("When are you open?")
    page.keyboard.press("Enter")
    expect(frame.locator(VISITOR)).to_have_text(["When are you open?"])


# ---- unread badge --------------------------------------------------------------------------------

def test_reply_while_closed_shows_a_badge_announced_once_and_opening_clears_it(embed, page):
    """Ask, close before the (slowed) answer completes: the launcher shows 1, its name says so, the
    host page's live region says it once; opening clears the count."""
    _, url = embed(env={"CHAT_WIDGET_FAULTS": "reply_delay=2"})
    frame = open_connected(page, url)
    announcer(page).evaluate(RECORD)
    ask(frame, "When are you open?")
    page.keyboard.press("Escape")
    expect(frame_element(page)).to_be_hidden()
    done = frame.locator(f'{CONSULTANT}:not([data-streaming])')
    assert done.count() == 0, "the reply completed before the panel closed: slow it down more"

    expect(page.get_by_role("button", name="Chat with us, 1 new message")).to_be_visible(timeout=15000)
    badge = page.locator(".launcher .badge")
    expect(badge).to_have_text("1")
    expect(badge).to_be_visible()
    reply_done(frame)
    expect(announcer(page)).to_have_text("New message from our consultant")
    assert announcer(page).evaluate("(element) => element.__said") == ["New message from our consultant"]
    # Not also said inside the (hidden) panel.
    expect(frame.locator("[data-announce]")).to_have_text("")

    launcher(page).click()
    expect(root(page)).to_have_attribute("data-unread", "0")
    assert page.evaluate("() => window.chatWidget.unread") == 0
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Chat with us", exact=True)).to_be_visible()
    expect(badge).to_be_hidden()
    assert announcer(page).evaluate("(element) => element.__said") == ["New message from our consultant"]


# ---- screen readers and motion -------------------------------------------------------------------

def test_screen_readers_hear_each_reply_once_and_state_politely(embed, page):
    """The message list is no live region (streamed words are not read piece by piece); a completed
    reply goes once to the polite [data-announce] region; the status is polite."""
    _, url = embed()
    frame = open_connected(page, url)
    live = frame.evaluate("""() => {
      const list = document.querySelector('[data-messages]');
      const found = [];
      for (let element = list; element; element = element.parentElement) {
        if (element.hasAttribute('aria-live') || ['log', 'status', 'alert', 'marquee', 'timer']
            .includes(element.getAttribute('role'))) found.push(element.tagName);
      }
      return found;
    }""")
    assert live == [], f"the message list is inside a live region: {live}"
    expect(frame.locator("[data-announce]")).to_have_attribute("aria-live", "polite")
    expect(frame.get_by_role("status")).to_have_text("Connected")
    assert frame.get_by_role("status").get_attribute("aria-live") in (None, "polite")

    frame.locator("[data-announce]").evaluate(RECORD)
    ask(frame, "When are you open?")
    reply = reply_done(frame).inner_text()
    expect(frame.locator("[data-announce]")).to_have_text(reply)
    assert frame.locator("[data-announce]").evaluate("(element) => element.__said") == [reply]


def test_reduced_motion_opens_without_animation(embed, page):
    """The panel rises into view, unless the visitor asked for reduced motion."""
    _, url = embed()
    open_connected(page, url)
    assert frame_element(page).evaluate("(frame) => getComputedStyle(frame).animationName") == "rise"
    page.keyboard.press("Escape")
    page.emulate_media(reduced_motion="reduce")
    launcher(page).click()
    expect(frame_element(page)).to_be_visible()
    assert frame_element(page).evaluate("(frame) => getComputedStyle(frame).animationName") == "none"


# ---- phones --------------------------------------------------------------------------------------

def test_phone_panel_fills_the_viewport_and_follows_the_visual_viewport(embed, new_context):
    """Below 480 px the open panel is the whole viewport; the message box is 16 px (no iOS zoom);
    when the visual viewport shrinks (the on-screen keyboard), the panel shrinks with it."""
    _, url = embed()
    page = new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    frame = open_connected(page, url)
    assert frame_element(page).bounding_box() == {"x": 0, "y": 0, "width": 390, "height": 844}
    size = frame.get_by_role("textbox").evaluate("(box) => parseFloat(getComputedStyle(box).fontSize)")
    assert size >= 16

    # A keyboard takes 344 px: only the visual viewport shrinks (Chrome on Android, iOS Safari).
    page.evaluate("""() => {
      Object.defineProperty(window.visualViewport, 'height', {configurable: true, get: () => 500});
      window.visualViewport.dispatchEvent(new Event('resize'));
    }""")
    expect(frame_element(page)).to_have_css("height", "500px")
    assert frame_element(page).bounding_box() == {"x": 0, "y": 0, "width": 390, "height": 500}
    form = frame.locator("form[data-chat-form]").bounding_box()
    assert form["y"] + form["height"] <= 500, "the message box is under the keyboard"

    # A real resize of the viewport: the panel follows.
    page.evaluate("() => { delete window.visualViewport.height; }")
    page.set_viewport_size({"width": 390, "height": 600})
    expect(frame_element(page)).to_have_css("height", "600px")
    assert frame_element(page).bounding_box() == {"x": 0, "y": 0, "width": 390, "height": 600}


# ---- axe-core ------------------------------------------------------------------------------------

# The frame is a document of the host's page, not a page of its own: axe's two whole-page rules (one
# main landmark, one level-one heading) hold for the page as a visitor meets it (the host's main and
# h1, checked by the composed run), not for the frame's document alone.
PAGE_RULES = ["landmark-one-main", "page-has-heading-one"]
AXE_RUN = """async ([iframes, skip]) => {
  axe.configure({allowedOrigins: ['<unsafe_all_origins>']});
  const rules = Object.fromEntries(skip.map((rule) => [rule, {enabled: false}]));
  const result = await axe.run(document, {iframes, rules});
  return result.violations.map((v) => ({rule: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((node) => node.target.join(' ') + ': ' + node.failureSummary)}));
}"""


def inject_axe(target):
    if not target.evaluate("() => typeof window.axe !== 'undefined'"):
        target.add_script_tag(path=str(AXE))
        target.evaluate("() => axe.configure({allowedOrigins: ['<unsafe_all_origins>']})")


def axe_violations(page, frame=None):
    """axe-core (from node_modules, never a CDN) on the host page and, when the panel is open, inside
    the frame: once for the page as a whole (the frame included, as the visitor meets it), once for
    the frame's own document. Returns the violations by where they were found."""
    inject_axe(page)
    found = {}
    if frame is not None:
        inject_axe(frame)
        found["frame"] = frame.evaluate(AXE_RUN, [False, PAGE_RULES])
    found["page"] = page.evaluate(AXE_RUN, [frame is not None, []])
    return {where: violations for where, violations in found.items() if violations}


def test_axe_closed_open_and_reconnecting(embed, new_context):
    """No violations with the panel closed, open and connected (with a conversation), and reconnecting."""
    server, url = embed()
    page = new_context(bypass_csp=True).new_page()  # axe is injected into the frame, whose CSP forbids that
    page.goto(url)
    expect(root(page)).to_have_attribute("data-state", "idle", timeout=15000)
    assert axe_violations(page) == {}, "closed"

    launcher(page).click()
    frame = chat(page)
    expect(root(page)).to_have_attribute("data-state", "connected", timeout=15000)
    ask(frame, "When are you open?")
    reply_done(frame)
    assert axe_violations(page, frame) == {}, "open and connected"

    server.kill()
    expect(root(page)).to_have_attribute("data-state", "reconnecting", timeout=15000)
    expect(frame.locator("[data-reconnect]")).to_be_visible()
    assert axe_violations(page, frame) == {}, "reconnecting"


def test_axe_failed_with_its_alert(embed, new_context):
    """The server refuses the widget's protocol version (close 4001): failed, with an assertive alert
    and the site's contacts, and axe finds nothing."""
    _, url = embed("--contact-email", "help@shop.example")
    page = new_context(bypass_csp=True).new_page()
    # What a chat server of another protocol version answers (server/transport/socket.py UNSUPPORTED).
    page.route_web_socket(re.compile(r"/ws(\?|$)"), lambda socket: socket.close(
        code=4001, reason="unsupported protocol version; server speaks v1"))
    page.goto(url)
    launcher(page).click()
    frame = chat(page)
    expect(root(page)).to_have_attribute("data-state", "failed", timeout=15000)
    alert = frame.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("This page's chat is out of date with the chat server.")
    expect(alert).to_contain_text("help@shop.example")
    assert alert.get_attribute("aria-live") in (None, "assertive")  # role=alert: said at once
    expect(frame.get_by_role("status")).to_have_text("Chat is unavailable")
    assert page.evaluate("() => window.chatWidget.state") == "failed"
    assert axe_violations(page, frame) == {}, "failed"


# ---- languages and looks -------------------------------------------------------------------------

GERMAN = {"launcher": "Chatten Sie mit uns", "panel": "Chat mit unserer Beratung",
          "title": "Fragen Sie unsere Beratung", "connected": "Verbunden", "message": "Ihre Nachricht",
          "send": "Senden", "close": "Chat schließen"}


@pytest.mark.parametrize("source", ["data-lang", "html-lang", "browser"])
def test_german_from_the_tag_the_page_or_the_browser(source, embed, new_context):
    """data-lang="de", else the host page's <html lang="de">, else the browser's German: all German, and
    the consultant answers a German question from the German knowledge file (hello carries the language)."""
    if source == "data-lang":
        _, url = embed(lang="de")
    elif source == "html-lang":
        _, url = embed(page_lang="de")
    else:
        _, url = embed(page_lang="")
    page = new_context(locale="de-DE" if source == "browser" else "en-US").new_page()
    page.goto(url)
    button = page.get_by_role("button", name=GERMAN["launcher"], exact=True)
    expect(button).to_be_visible()
    button.click()
    frame = chat(page)
    expect(root(page)).to_have_attribute("data-state", "connected", timeout=15000)
    expect(frame.locator("html")).to_have_attribute("lang", "de")
    expect(frame_element(page)).to_have_attribute("title", GERMAN["panel"])
    expect(frame.get_by_role("heading")).to_have_text(GERMAN["title"])
    expect(frame.get_by_role("status")).to_have_text(GERMAN["connected"])
    expect(frame.get_by_role("textbox", name=GERMAN["message"])).to_be_focused()
    expect(frame.get_by_role("button", name=GERMAN["send"])).to_be_visible()
    expect(frame.get_by_role("button", name=GERMAN["close"])).to_be_visible()
    frame.get_by_role("textbox", name=GERMAN["message"]).fill("Wann habt ihr geöffnet?")
    frame.get_by_role("button", name=GERMAN["send"]).click()
    expect(frame.locator('[data-author="consultant"]').last).to_contain_text("9:00 bis 18:00 Uhr geöffnet")


def left_and_right_gaps(outer, inner):
    """Space between ``inner``'s box and ``outer``'s on the left and on the right."""
    return inner["x"] - outer["x"], (outer["x"] + outer["width"]) - (inner["x"] + inner["width"])


# Which way a message's text runs on screen: is its last character (a full stop, a question mark:
# neutral, so placed by the paragraph's direction) drawn after the one before it, or before it?
READING = """(item) => {
  const text = item.firstChild, range = document.createRange(), n = text.length;
  range.setStart(text, n - 2); range.setEnd(text, n - 1);
  const before = range.getBoundingClientRect();
  range.setStart(text, n - 1); range.setEnd(text, n);
  const last = range.getBoundingClientRect();
  return last.left > before.left ? "ltr" : "rtl";
}"""


def test_a_site_catalogue_for_hebrew_renders_right_to_left(embed, page, tmp_path):
    """A site's own he.json ("dir": "rtl") with data-lang="he": Hebrew words, a mirrored panel (dir=rtl,
    the visitor's messages on the left), the launcher and panel on the left."""
    folder = write_catalogue(tmp_path / "catalogues", "he", HEBREW)
    _, url = embed("--catalogues", folder, lang="he")
    page.goto(url)
    button = page.get_by_role("button", name=HEBREW["launcher"], exact=True)
    expect(button).to_be_visible()
    viewport = page.viewport_size
    assert button.bounding_box()["x"] < viewport["width"] / 2, "an rtl launcher sits on the left"
    button.click()
    frame = chat(page)
    expect(root(page)).to_have_attribute("data-state", "connected", timeout=15000)
    expect(frame.locator("html")).to_have_attribute("dir", "rtl")
    expect(frame.locator("html")).to_have_attribute("lang", "he")
    expect(frame.get_by_role("heading")).to_have_text(HEBREW["title"])
    expect(frame.get_by_role("status")).to_have_text(HEBREW["status"]["connected"])
    box = frame.get_by_role("textbox", name=HEBREW["message_label"])
    expect(box).to_be_focused()
    expect(box).to_have_attribute("placeholder", HEBREW["placeholder"])
    assert frame_element(page).bounding_box()["x"] < viewport["width"] / 2, "an rtl panel opens on the left"

    ask(frame, "מתי אתם פתוחים?")
    reply_done(frame)
    messages = frame.locator("[data-messages]").bounding_box()
    left, right = left_and_right_gaps(messages, frame.locator(VISITOR).bounding_box())
    assert left < right, "the visitor's message is on the left (mirrored)"
    left, right = left_and_right_gaps(messages, frame.locator(CONSULTANT).first.bounding_box())
    assert right < left, "the consultant's reply is on the right (mirrored)"
    # Each message reads in its own text's direction: the Hebrew question right to left, the English
    # answer (the knowledge base is English) left to right, its full stop at its end.
    assert frame.locator(VISITOR).evaluate(READING) == "rtl"
    assert frame.locator(CONSULTANT).first.evaluate(READING) == "ltr"
    # The header mirrors too: the title on the right, the close button on the left.
    header = frame.locator(".cw-header").bounding_box()
    left, right = left_and_right_gaps(header, frame.get_by_role("button", name=HEBREW["close"]).bounding_box())
    assert left < right


def test_title_greeting_accent_and_position_from_the_tag(embed, page):
    """data-title, data-greeting, data-accent and data-position="left" take effect."""
    _, url = embed(title="Garden help", greeting="Hello! Ask us anything about spades.", accent="#0a7d32",
                   position="left")
    page.goto(url)
    viewport = page.viewport_size
    expect(launcher(page)).to_have_css("background-color", "rgb(10, 125, 50)")
    assert launcher(page).bounding_box()["x"] < viewport["width"] / 2
    launcher(page).click()
    frame = chat(page)
    expect(root(page)).to_have_attribute("data-state", "connected", timeout=15000)
    expect(frame.get_by_role("heading")).to_have_text("Garden help")
    expect(frame.get_by_text("Hello! Ask us anything about spades.")).to_be_visible()
    expect(frame.locator(".cw-header")).to_have_css("background-color", "rgb(10, 125, 50)")
    expect(frame.get_by_role("button", name="Send")).to_have_css("background-color", "rgb(10, 125, 50)")
    assert frame_element(page).bounding_box()["x"] < viewport["width"] / 2
    # On the left, an English panel still reads left to right.
    expect(frame.locator("html")).to_have_attribute("dir", "ltr")


def test_accent_and_font_from_the_sites_css_custom_properties(embed, page):
    """Without attributes, the site's --chat-widget-accent and --chat-widget-font reach the launcher and the panel."""
    body = ("<style>:root { --chat-widget-accent: #8a1538; --chat-widget-font: Georgia, serif; }</style>"
            + SHOP)
    _, url = embed(body=body)
    page.goto(url)
    expect(launcher(page)).to_have_css("background-color", "rgb(138, 21, 56)")
    launcher(page).click()
    frame = chat(page)
    expect(root(page)).to_have_attribute("data-state", "connected", timeout=15000)
    expect(frame.locator(".cw-header")).to_have_css("background-color", "rgb(138, 21, 56)")
    expect(frame.locator(".cw-title")).to_have_css("font-family", "Georgia, serif")


def test_the_tag_added_after_the_pages_load_works_the_same(site, start_server, page):
    """docs/embedding.md's way to keep even the tag's script out of the page's load: add it from a
    load handler, with its attributes in dataset."""
    server = start_server("--allow-origin", site.origin, "--store", "memory")
    script = chat_url(server).rstrip("/") + "/embed.js"
    body = SHOP + ("<script>addEventListener('load', function () { var tag = document.createElement('script');"
                   f" tag.src = '{script}'; tag.dataset.lang = 'de'; document.body.appendChild(tag); }});</script>")
    page.goto(site.page("/after-load.html", page_html(body)))
    page.get_by_role("button", name="Chatten Sie mit uns").click()
    frame = chat(page)
    expect(root(page)).to_have_attribute("data-state", "connected", timeout=15000)
    expect(frame.get_by_role("textbox")).to_be_focused()


def test_a_reply_still_unread_after_a_reload_is_counted_again_but_not_announced_again(embed, page):
    """The badge survives a reload (the reply is still unread); its announcement was made once, on the
    page where it arrived, and a replay does not repeat it."""
    _, url = embed(env={"CHAT_WIDGET_FAULTS": "reply_delay=2"})
    frame = open_connected(page, url)
    ask(frame, "When are you open?")
    page.keyboard.press("Escape")
    expect(page.locator(".launcher .badge")).to_have_text("1", timeout=15000)
    expect(announcer(page)).to_have_text("New message from our consultant")

    page.reload()
    announcer(page).evaluate(RECORD)
    expect(root(page)).to_have_attribute("data-state", "connected", timeout=15000)  # a conversation in progress
    expect(page.locator(".launcher .badge")).to_have_text("1", timeout=15000)
    expect(page.get_by_role("button", name="Chat with us, 1 new message")).to_be_visible()
    assert announcer(page).evaluate("(element) => element.__said") == []
    expect(announcer(page)).to_have_text("")


def test_a_broken_accent_cannot_break_the_launchers_styles(embed, page):
    """data-accent="red /*" (a typo that CSS.supports lets through) stays a colour, not a comment that
    swallows the rest of the launcher's stylesheet."""
    _, url = embed(accent="red /*")
    page.goto(url)
    box = launcher(page).bounding_box()
    assert (box["width"], box["height"]) == (60, 60)
    assert box["y"] + box["height"] > page.viewport_size["height"] - 40  # still in its corner
    expect(launcher(page)).to_have_css("background-color", "rgb(255, 0, 0)")
