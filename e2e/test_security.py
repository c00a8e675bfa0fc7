"""Security in real Chromium: the CSP holds on both runtimes, and hostile text renders as inert text."""

import asyncio
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from openai_stub import OpenAIStub  # noqa: E402

VISITOR = '[data-author="visitor"]'
CONSULTANT = '[data-author="consultant"]'
# Installed before any page script: records every CSP violation, enforced or report-only.
WATCH_CSP = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => window.__violations.push({
  directive: event.effectiveDirective, blocked: event.blockedURI, source: event.sourceFile,
  line: event.lineNumber, column: event.columnNumber, sample: event.sample,
}));
"""
PAYLOADS = [
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=1</script>",
    '<a href="javascript:window.__xss=1">x</a>',
    "invoice\u202eexe.pdf",
]


def has_csp(server):
    with urllib.request.urlopen(server.url + "/", timeout=5) as answer:
        return "Content-Security-Policy" in answer.headers


@pytest.fixture
def secure_server(start_server):
    """Factory: the real server, checked to send its Content-Security-Policy."""

    def start(*args):
        server = start_server(*args, env={"CHAT_WIDGET_STORE": "memory"})
        assert has_csp(server)
        return server

    return start


@pytest.fixture
def watched_page(page):
    """A page that records CSP violations and page errors."""
    page.add_init_script(WATCH_CSP)
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page


def ask(page, text):
    page.fill('textarea[name="message"]', text)
    page.press('textarea[name="message"]', "Enter")


def open_chat(page, url, timeout):
    response = page.goto(url)
    page.click('[data-action="open"]')
    page.wait_for_selector('#chat-widget[data-state="connected"]', timeout=timeout)
    return response


def assert_inert(page):
    assert page.evaluate("typeof window.__xss") == "undefined", "a payload ran"
    created = page.locator("[data-messages] img, [data-messages] script, [data-messages] a")
    expect(created).to_have_count(0)
    assert page.evaluate("window.__violations") == []
    assert page.errors == []


@pytest.mark.parametrize("runtime", ["micropython", "pyodide"])
def test_csp_causes_no_violation_while_chatting(runtime, secure_server, watched_page):
    """Under the CSP the widget loads, connects and gets a reply with zero securitypolicyviolation events."""
    server = secure_server("--runtime", runtime)
    response = open_chat(watched_page, server.url + "/", 5000 if runtime == "micropython" else 30000)
    assert response.headers["content-security-policy"].startswith("default-src 'none';")
    watched_page.fill('textarea[name="message"]', "What are your opening hours?")
    watched_page.click('form[data-chat-form] button[type="submit"]')  # the submit event, under form-action 'none'
    expect(watched_page.locator(f"{VISITOR}[data-delivery='delivered']")).to_have_count(1)
    assert watched_page.url == server.url + "/"
    expect(watched_page.locator(CONSULTANT)).to_have_count(1, timeout=10000)
    expect(watched_page.locator(CONSULTANT)).not_to_have_text("")
    assert watched_page.evaluate("window.__violations") == []
    assert watched_page.errors == []


def test_send_before_python_runs_keeps_the_text_out_of_the_url(secure_server, watched_page):
    """If the runtime never loads, Send must not submit the form natively (GET /?message=<text>)."""
    server = secure_server()
    watched_page.route("**/core*.js", lambda route: route.abort())  # Python never starts
    watched_page.add_init_script("""
      window.__submits = [];
      window.addEventListener("submit", (event) => window.__submits.push(event.defaultPrevented));
    """)
    watched_page.goto(server.url + "/")
    watched_page.click('[data-action="open"]')
    watched_page.fill('textarea[name="message"]', "my order number is 12345")
    watched_page.click('form[data-chat-form] button[type="submit"]', no_wait_after=True)
    watched_page.wait_for_function("window.__submits.length === 1")
    if not watched_page.evaluate("window.__submits[0]"):
        # Nothing on the page stopped the submission: the CSP's form-action 'none' must block it.
        watched_page.wait_for_function("window.__violations.some((v) => v.directive === 'form-action')", timeout=5000)
    assert watched_page.url == server.url + "/"


def test_visitor_payloads_render_as_text(secure_server, watched_page):
    """HTML, script, javascript: links and a bidi override typed by the visitor show verbatim and run nothing."""
    server = secure_server()
    open_chat(watched_page, server.url + "/", 5000)
    for number, payload in enumerate(PAYLOADS):
        ask(watched_page, payload)
        message = watched_page.locator(VISITOR).nth(number)
        expect(message).to_have_attribute("data-delivery", "delivered")
        assert message.evaluate("element => element.textContent") == payload
    assert_inert(watched_page)


@pytest.fixture
def payload_consultant():
    """An OpenAI-compatible stub whose streamed reply is every payload, split in the middle of the tags."""
    loop = asyncio.new_event_loop()
    pieces = ("<img src=x one", 'rror="window.__xss=1"> <scr', "ipt>window.__xss=1</script> <a hr",
              'ef="javascript:window.__xss=1">x</a> invoice\u202eexe.pdf')
    stub = OpenAIStub(mode="stream", pieces=pieces)
    ready = threading.Event()
    stop = asyncio.Event()

    async def run():
        async with stub:
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: loop.run_until_complete(run()), daemon=True)
    thread.start()
    assert ready.wait(5)
    yield stub, "".join(pieces)
    loop.call_soon_threadsafe(stop.set)
    thread.join(5)


def test_consultant_payloads_render_as_text(secure_server, watched_page, payload_consultant):
    """A consultant reply made of payloads, streamed with tags split across pieces, shows verbatim and runs nothing."""
    stub, reply = payload_consultant
    server = secure_server("--consultant", "openai", "--openai-base-url", stub.base_url, "--openai-model", "test")
    open_chat(watched_page, server.url + "/", 5000)
    ask(watched_page, "Tell me something")
    answer = watched_page.locator(CONSULTANT)
    expect(answer).to_have_count(1)
    expect(watched_page.locator(f"{CONSULTANT}[data-streaming]")).to_have_count(0)
    assert answer.evaluate("element => element.textContent") == reply
    assert_inert(watched_page)
