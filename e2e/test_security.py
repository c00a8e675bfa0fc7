"""Security in real Chromium: the CSP holds on both runtimes, and hostile text renders as inert text.

Two documents, two policies: the widget's frame (``/embed/frame``) gets the widget's CSP (PyScript
needs 'unsafe-eval' there), the page that embeds it (the demo page ``/``, or a shop on another origin)
a host policy with neither 'unsafe-eval' nor 'unsafe-inline'. Violations are recorded in both
documents (an init script runs in every frame). Which sites may embed is the server's decision
(``--allow-origin``): the frame's ``frame-ancestors`` and embed.js's question to ``/ws-check``.
"""

import asyncio
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from host_site import HostSite, chat_url, page_html, snippet
from widget_page import FRAME, chat, launcher, message_box, wait_host_state

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from openai_stub import OpenAIStub  # noqa: E402

VISITOR = '[data-author="visitor"]'
CONSULTANT = '[data-author="consultant"]'
FRAME_PATH = "/embed/frame?"
# Installed before any page script, in the host page and in the widget's frame: records every CSP
# violation, enforced or report-only.
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
    for path in ("/", FRAME_PATH + "lang=en"):
        with urllib.request.urlopen(server.url + path, timeout=5) as answer:
            if "Content-Security-Policy" not in answer.headers:
                return False
    return True


def directives(policy):
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def assert_host_policy(policy):
    """A policy a site owner can live with: strict, without 'unsafe-eval' or 'unsafe-inline'."""
    assert policy.startswith("default-src 'none';"), policy
    assert "'unsafe-eval'" not in policy and "'unsafe-inline'" not in policy, policy


@pytest.fixture
def secure_server(start_server):
    """Factory: the real server, checked to send its Content-Security-Policy (page and frame)."""

    def start(*args):
        server = start_server(*args, env={"CHAT_WIDGET_STORE": "memory"})
        assert has_csp(server)
        return server

    return start


@pytest.fixture
def watched_page(page):
    """A page that records CSP violations (in each of its documents) and page errors (the frame's too)."""
    page.add_init_script(WATCH_CSP)
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page


def violations(page):
    """The CSP violations of the host page and of the widget's frame, by document URL."""
    return {frame.url: frame.evaluate("() => window.__violations") for frame in page.frames}


def ask(page, text):
    message_box(page).fill(text)
    message_box(page).press("Enter")


def open_chat(page, url, timeout):
    """Open the page and the chat; returns (the host page's response, the frame's response, the frame)."""
    with page.expect_response(lambda response: FRAME_PATH in response.url) as framed:
        response = page.goto(url)
        launcher(page).click()
    frame = chat(page)
    frame.wait_for_selector('#chat-widget[data-state="connected"]', timeout=timeout)
    return response, framed.value, frame


def assert_inert(page, frame):
    for document in (page, frame):
        assert document.evaluate("() => typeof window.__xss") == "undefined", "a payload ran"
    created = frame.locator("[data-messages] img, [data-messages] script, [data-messages] a")
    expect(created).to_have_count(0)
    assert all(found == [] for found in violations(page).values()), violations(page)
    assert page.errors == []


@pytest.mark.parametrize("runtime", ["micropython", "pyodide"])
def test_csp_causes_no_violation_while_chatting(runtime, secure_server, watched_page):
    """Under both policies the widget loads, connects and gets a reply with zero securitypolicyviolation
    events, in the host page and in the frame."""
    server = secure_server("--runtime", runtime)
    response, framed, frame = open_chat(watched_page, server.url + "/", 5000 if runtime == "micropython" else 30000)
    assert_host_policy(response.headers["content-security-policy"])
    widget_policy = directives(framed.headers["content-security-policy"])
    assert widget_policy["default-src"] == ["'none'"] and widget_policy["form-action"] == ["'none'"]
    assert widget_policy["frame-ancestors"] == ["'self'"]  # no --allow-origin: only this server may frame it
    frame_url = frame.url
    message_box(watched_page).fill("What are your opening hours?")
    frame.click('form[data-chat-form] button[type="submit"]')  # the submit event, under form-action 'none'
    expect(frame.locator(f"{VISITOR}[data-delivery='delivered']")).to_have_count(1)
    assert watched_page.url == server.url + "/" and frame.url == frame_url
    expect(frame.locator(CONSULTANT)).to_have_count(1, timeout=10000)
    expect(frame.locator(CONSULTANT)).not_to_have_text("")
    assert len(violations(watched_page)) == 2
    assert all(found == [] for found in violations(watched_page).values()), violations(watched_page)
    assert watched_page.errors == []


def test_send_before_python_runs_keeps_the_text_out_of_the_url(secure_server, watched_page):
    """If the runtime never loads, Send must not submit the form natively (GET /embed/frame?message=<text>)."""
    server = secure_server()
    watched_page.route("**/core*.js", lambda route: route.abort())  # Python never starts
    watched_page.add_init_script("""
      window.__submits = [];
      window.addEventListener("submit", (event) => window.__submits.push(event.defaultPrevented));
    """)
    watched_page.goto(server.url + "/")
    launcher(watched_page).click()
    frame = chat(watched_page)
    frame_url = frame.url
    message_box(watched_page).fill("my order number is 12345")
    frame.click('form[data-chat-form] button[type="submit"]', no_wait_after=True)
    frame.wait_for_function("() => window.__submits.length === 1")
    if not frame.evaluate("() => window.__submits[0]"):
        # Nothing on the page stopped the submission: the CSP's form-action 'none' must block it.
        frame.wait_for_function("() => window.__violations.some((v) => v.directive === 'form-action')",
                                timeout=5000)
    assert frame.url == frame_url and "12345" not in frame.url
    assert watched_page.url == server.url + "/"


def test_visitor_payloads_render_as_text(secure_server, watched_page):
    """HTML, script, javascript: links and a bidi override typed by the visitor show verbatim and run nothing."""
    server = secure_server()
    _, _, frame = open_chat(watched_page, server.url + "/", 5000)
    for number, payload in enumerate(PAYLOADS):
        ask(watched_page, payload)
        message = frame.locator(VISITOR).nth(number)
        expect(message).to_have_attribute("data-delivery", "delivered")
        assert message.evaluate("element => element.textContent") == payload
    assert_inert(watched_page, frame)


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
    _, _, frame = open_chat(watched_page, server.url + "/", 5000)
    ask(watched_page, "Tell me something")
    answer = frame.locator(CONSULTANT)
    expect(answer).to_have_count(1)
    expect(frame.locator(f"{CONSULTANT}[data-streaming]")).to_have_count(0)
    assert answer.evaluate("element => element.textContent") == reply
    assert_inert(watched_page, frame)


# ---- which sites may embed ----------------------------------------------------------------------

def strict_host_policy(server):
    """What a shop on another origin adds to a strict policy for the one tag: the chat server as a
    script, a fetch (/ws-check) and a frame source; no 'unsafe-eval', no 'unsafe-inline'."""
    chat = chat_url(server).rstrip("/")
    return (f"default-src 'none'; script-src 'self' {chat}; connect-src 'self' {chat}; frame-src {chat}; "
            "img-src 'self'; style-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def test_an_allowed_site_with_a_strict_csp_chats_without_a_violation(secure_server, watched_page):
    """A shop on another origin, allowed by --allow-origin, with a strict policy of its own: the visitor
    chats and neither document records a violation."""
    with HostSite() as site:
        server = secure_server("--allow-origin", site.origin)
        policy = strict_host_policy(server)
        assert_host_policy(policy)
        url = site.page("/shop.html", page_html("<h1>A shop</h1>\n" + snippet(server)),
                        headers={"Content-Security-Policy": policy})
        response, framed, frame = open_chat(watched_page, url, 10000)
        assert response.headers["content-security-policy"] == policy
        assert directives(framed.headers["content-security-policy"])["frame-ancestors"] == ["'self'", site.origin]
        ask(watched_page, "What are your opening hours?")
        expect(frame.locator(CONSULTANT)).to_have_count(1, timeout=10000)
        assert watched_page.url == url
        assert len(violations(watched_page)) == 2
        assert all(found == [] for found in violations(watched_page).values()), violations(watched_page)
        assert watched_page.errors == []


def test_a_site_not_allowed_gets_no_chat_with_the_snippet_or_by_framing_the_chat_directly(secure_server, watched_page):
    """A site not in --allow-origin: the snippet refuses (no launcher, no frame, no socket, one console
    line for the owner), and a frame of the chat server's page put there by hand stays empty
    (frame-ancestors): nothing of the widget runs and no socket opens."""
    errors, sockets = [], []
    watched_page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    watched_page.on("websocket", lambda socket: sockets.append(socket.url))
    with HostSite() as site:
        server = secure_server("--allow-origin", "https://shop.example.com")
        chat_server = chat_url(server).rstrip("/")
        copied = site.page("/copied.html", page_html("<h1>Copied the snippet</h1>\n" + snippet(server)))
        watched_page.goto(copied)
        wait_host_state(watched_page, "refused")
        expect(launcher(watched_page)).to_have_count(0)
        expect(watched_page.locator(FRAME)).to_have_count(0)
        refusals = [line for line in errors if line.startswith("Chat widget:")]
        assert len(refusals) == 1, errors
        assert site.origin in refusals[0] and chat_server in refusals[0]
        assert f"--allow-origin {site.origin}" in refusals[0]  # the setting to change

        framed = site.page("/framed.html", page_html(
            f'<iframe name="stolen" src="{chat_server}/embed/frame?lang=en#host={site.origin}"></iframe>'))
        with watched_page.expect_response(lambda response: FRAME_PATH in response.url) as answer, \
                watched_page.expect_console_message(lambda message: "frame-ancestors" in message.text):
            watched_page.goto(framed)
        assert site.origin not in answer.value.headers["content-security-policy"]
        # The browser refused to show it: the frame holds the browser's error page, not the widget.
        watched_page.wait_for_load_state("load")  # the page's load waits for its frame's
        stolen = watched_page.wait_for_selector('iframe[name="stolen"]').content_frame()
        assert not stolen.url.startswith(chat_server), stolen.url
        expect(watched_page.frame_locator('iframe[name="stolen"]').locator("#chat-widget")).to_have_count(0)
        assert sockets == []
