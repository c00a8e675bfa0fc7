"""How a visitor finds the widget's parts on the demo page (by role and name, as assistive tech does)."""

from playwright.sync_api import expect

WIDGET = "#chat-widget"


def launcher(page):
    return page.get_by_role("button", name="Chat with us")


def message_box(page):
    return page.get_by_role("textbox", name="Your message")


def load(page, url, state="connected"):
    """Load the page and wait (panel still closed) until the widget is in ``state``."""
    page.goto(url)
    expect(page.locator(WIDGET)).to_have_attribute("data-state", state, timeout=10000)
