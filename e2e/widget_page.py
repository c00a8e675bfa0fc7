"""How a visitor finds the widget's parts (by role and name, as assistive tech does).

The widget is embedded with the one-tag snippet (``/embed.js``), on the demo page and on every host
page of the tests: the launcher is a button on the host page (in an open shadow root, which
Playwright's locators pierce), and everything else lives in the widget's frame
(``iframe[name="chat-widget"]``, served by the chat server), where ``#chat-widget`` carries
``data-state``/``data-open``/``data-unread``. ``window.chatWidget`` on the host page is the public API.

The host pages have a strict CSP (no 'unsafe-eval'): pass functions (``"() => ..."``) to
``page.wait_for_function``/``page.evaluate``, not bare expressions.
"""

from playwright.sync_api import expect

WIDGET = "#chat-widget"
FRAME = 'iframe[name="chat-widget"]'
LAUNCHER_NAME = "Chat with us"


def launcher(page):
    return page.get_by_role("button", name=LAUNCHER_NAME)


def chat(page, timeout=15000):
    """The widget's frame (a Playwright ``Frame``), once it exists and its root is in the DOM."""
    handle = page.wait_for_selector(FRAME, state="attached", timeout=timeout)
    frame = handle.content_frame()
    frame.wait_for_selector(WIDGET, state="attached", timeout=timeout)
    return frame


def root(page):
    """``#chat-widget`` inside the frame, as a locator (for ``expect(...).to_have_attribute``)."""
    return page.frame_locator(FRAME).locator(WIDGET)


def message_box(page):
    return page.frame_locator(FRAME).get_by_role("textbox", name="Your message")


def host_state(page):
    """``window.chatWidget.state`` on the host page."""
    return page.evaluate("() => window.chatWidget ? window.chatWidget.state : null")


def wait_host_state(page, state, timeout=15000):
    page.wait_for_function("(state) => window.chatWidget && window.chatWidget.state === state", arg=state,
                           timeout=timeout)


def load(page, url, state="idle", timeout=15000):
    """Load the page and wait (panel still closed) until the widget is in ``state`` (``idle``: its
    runtime is ready and nothing is connected; a conversation in progress reconnects by itself)."""
    page.goto(url)
    expect(root(page)).to_have_attribute("data-state", state, timeout=timeout)
    return chat(page)


def open_panel(page):
    """Click the launcher; returns the widget's frame."""
    launcher(page).click()
    return chat(page)


def open_chat(page, url, state="connected", timeout=15000):
    """Load the page, open the panel, and wait until the widget is in ``state``; returns the frame."""
    page.goto(url)
    frame = open_panel(page)
    frame.wait_for_selector(f'{WIDGET}[data-state="{state}"]', timeout=timeout)
    return frame
