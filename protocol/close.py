"""Close codes, failure classes, and how the widget classifies a failure.

Every close code either side sends or reacts to is written here once. A failure class names *why*
chat is not working; the widget's lifecycle decides by these functions whether to retry, wait longer
or stop, its diagnostics explain a class with ``FAILURES``, and its words (``widget/core/words.py``)
tell the visitor what to do about it.

Ranges of the application codes: 4000-4099, the server ends the session for good (retrying cannot
help); 4100-4199, the widget's own; 4200-4299, the server refuses *for now* and the widget retries
with the longer "try again later" delay. So far those refuse a new conversation (the server closes
right after the ``hello`` that would start one; conversations under way carry on): 4201 ``BUSY``
(class ``STORE_BUSY``) and 4202 ``LIMITED`` (class ``ADDRESS_LIMITED``); 4203 ``UNAVAILABLE`` (class
``STORE_UNAVAILABLE``) closes any connection while the server cannot reach its shared store (Redis
restarting), and is retried with the normal backoff, since such trouble usually lasts seconds. A code of the range this
widget does not know (a newer server's) reads as ``STORE_BUSY``: the server is up and said "later",
and the code itself still reaches the report.
"""

NORMAL = 1000
GOING_AWAY = 1001             # server: idle timeout
ABNORMAL = 1006               # never sent: a browser's name for a dropped or refused connection
POLICY = 1008                 # server: a limit was broken after warnings
TOO_BIG = 1009                # server: a frame larger than max_message_bytes
INTERNAL = 1011               # server: unexpected error
RESTART = 1012                # server: restarting (every socket, on SIGTERM)
TRY_LATER = 1013              # server: at its connection limit
UNSUPPORTED_VERSION = 4001    # server: the widget speaks another protocol version
CONNECT_TIMEOUT = 4100        # widget: no open within the connect timeout
HEARTBEAT_TIMEOUT = 4101      # widget: the connection went silent
BUSY = 4201                   # server: its conversation store is over budget; no new conversation for now
LIMITED = 4202                # server: too many new conversations from this address recently
UNAVAILABLE = 4203            # server: its shared conversation store is unreachable for now

SERVER_TERMINAL = (4000, 4099)   # application errors from the server: retrying cannot help
SERVER_TEMPORARY = (4200, 4299)  # temporary refusals from the server: retry later

# What the widget does after a close
RETRY = "retry"   # reconnect with normal backoff
SLOW = "slow"     # reconnect with the longer "try again later" delay
FAIL = "fail"     # stop (state failed) until the visitor presses Retry

# Failure classes: key -> what it means, for logs and diagnostics (not for visitors).
OFFLINE = "offline"
UNREACHABLE = "unreachable"
INTERFERENCE = "interference"
HEADERS_TOO_LARGE = "headers"
ORIGIN = "origin"
DRAINING = "draining"
STORE_BUSY = "busy"
ADDRESS_LIMITED = "limited"
STORE_UNAVAILABLE = "unavailable"
POLICY_BROKEN = "policy"
MESSAGE_TOO_BIG = "too_big"
PROTOCOL = "protocol"
CONFIG = "config"

FAILURES = {
    OFFLINE: "the browser is offline",
    UNREACHABLE: "the chat server is unreachable over HTTP and WebSocket (down, DNS, firewall)",
    INTERFERENCE: "the server answers HTTP but live connections fail on the way: the upgrade is refused, or a proxy "
                  "withholds the server's frames or cuts the connection soon after it opens",
    HEADERS_TOO_LARGE: "the browser sends request headers (mostly cookies) larger than the chat server accepts",
    ORIGIN: "the server refused this page's origin (not in its allowed origins)",
    DRAINING: "the server is restarting or unavailable",
    STORE_BUSY: "the server refuses new conversations for now: its conversation store is over budget (4201)",
    ADDRESS_LIMITED: "the server refuses new conversations for now: too many were started from this address (4202)",
    STORE_UNAVAILABLE: "the server cannot reach its conversation store for now (4203): it retries, nothing "
                       "acknowledged is lost",
    POLICY_BROKEN: "the server closed the connection for a policy violation (1008)",
    MESSAGE_TOO_BIG: "a message was larger than the server accepts (1009)",
    PROTOCOL: "the server ended the session (close code 4000-4099: protocol version or application error)",
    CONFIG: "the widget's configuration is invalid",
}

# Answers of /ws-check, as the widget reads them (probe_result)
PROBE_OK = "ok"                      # the server answers and would accept this origin
PROBE_UNREACHABLE = "unreachable"    # no answer over HTTP either
PROBE_ORIGIN = "origin_rejected"     # this page's origin is not allowed
PROBE_DRAINING = "draining"          # restarting, or at its connection limit (or this address's)
PROBE_HEADERS = "headers_too_large"  # this request's headers are larger than the socket accepts
PROBE_RESULTS = (PROBE_OK, PROBE_UNREACHABLE, PROBE_ORIGIN, PROBE_DRAINING, PROBE_HEADERS)


def classify(code):
    """``(what to do, failure class or None)`` for a close of the current socket.

    1008, 1009 and 4000-4099 are terminal; 1012 retries soon (the herd spreads by jitter) and 1013
    later, both saying the server is restarting or busy; 4203 retries soon; other 4200-4299 retry later with the server's reason
    (one this widget does not know reads as busy); anything else (1000 from the server, 1001, 1006,
    1011, the widget's own 4100/4101, ...) retries with backoff.
    """
    if code == POLICY:
        return FAIL, POLICY_BROKEN
    if code == TOO_BIG:
        return FAIL, MESSAGE_TOO_BIG
    if isinstance(code, int) and SERVER_TERMINAL[0] <= code <= SERVER_TERMINAL[1]:
        return FAIL, PROTOCOL
    if code == RESTART:
        return RETRY, DRAINING
    if code == TRY_LATER:
        return SLOW, DRAINING
    if code == LIMITED:
        return SLOW, ADDRESS_LIMITED
    if code == UNAVAILABLE:
        return RETRY, STORE_UNAVAILABLE
    if isinstance(code, int) and SERVER_TEMPORARY[0] <= code <= SERVER_TEMPORARY[1]:
        return SLOW, STORE_BUSY  # BUSY, and any temporary refusal this widget does not know yet
    return RETRY, None


def probe_result(answer):
    """Read the JSON answer of ``GET /ws-check`` (a dict, or None when the request failed)."""
    if not isinstance(answer, dict):
        return PROBE_UNREACHABLE
    if answer.get("allowed", True) is False:
        return PROBE_ORIGIN
    if answer.get("headers_too_large") is True:
        return PROBE_HEADERS
    if answer.get("draining") or answer.get("accepting", True) is False or answer.get("address_full") is True:
        return PROBE_DRAINING
    return PROBE_OK
