"""Health routes: ``/healthz`` (IETF health-check draft), ``/livez``, ``/readyz`` and ``/ws-check``."""

import asyncio
import json
from datetime import datetime, timezone

from quart import Blueprint, Response, current_app, request
from quart_cors import cors_exempt

from .assets import missing_runtime_assets
from .transport import headers
from .transport.limits import address_key

bp = Blueprint("health", __name__)
HEALTH_JSON = "application/health+json"


LAG_WARN = 0.1   # seconds the event loop was late: sockets feel sluggish
LAG_FAIL = 1.0   # heartbeats start to miss


async def _store_check(now):
    store = current_app.extensions["chat_store"]
    try:
        async with asyncio.timeout(2.0):
            sessions = await store.session_count()
    except Exception as error:
        return _check("fail", now, componentType="datastore", output=f"store not answering: {type(error).__name__}")
    return _check("pass", now, componentType="datastore", observedValue=sessions, observedUnit="sessions",
                  store=type(store).__name__)


def _store_budget_check(now):
    """Warn at the warning level; fail at the budget, where new conversations are refused."""
    budget = current_app.extensions["chat_store_budget"]
    status = {"ok": "pass", "warn": "warn", "full": "fail"}[budget.level]
    return _check(status, now, componentType="datastore", observedValue=budget.used, observedUnit="bytes",
                  warnAt=budget.warn_bytes, limit=budget.max_bytes, acceptingNewConversations=budget.accepting,
                  output=budget.describe())


def _loop_check(now):
    lag = current_app.extensions["chat_hub"].loop_lag
    status = "fail" if lag >= LAG_FAIL else ("warn" if lag >= LAG_WARN else "pass")
    output = f"event loop {lag * 1000:.0f} ms late: the server is overloaded" if status != "pass" else None
    return _check(status, now, componentType="system", observedValue=round(lag * 1000, 1), observedUnit="ms",
                  output=output)


async def _health_checks():
    hub = current_app.extensions["chat_hub"]
    config = current_app.extensions["chat_config"]
    now = datetime.now(timezone.utc).isoformat()
    open_count = len(hub.open)
    if hub.draining:
        accepting = ("fail", "draining for shutdown: new sockets are refused, clients should reconnect elsewhere")
    elif hub.full:
        accepting = ("fail", f"connection limit reached ({hub.max_connections}); new sockets get 503")
    elif hub.store_trouble is not None:
        accepting = ("fail", f"the conversation store does not answer ({hub.store_trouble}): new connections "
                             "are closed with 4203 until it is back")
    elif "chat_socket_path" not in current_app.extensions:
        accepting = ("fail", "the /ws endpoint is not registered")
    else:
        accepting = ("pass", None)
    load = open_count / hub.max_connections
    connections_status = "warn" if load >= 0.9 and not hub.full else ("fail" if hub.full else "pass")
    missing = missing_runtime_assets(config)
    checks = {
        "websocket:accepting": [_check(accepting[0], now, output=accepting[1], componentType="component")],
        "websocket:connections": [_check(
            connections_status, now, componentType="component", observedValue=open_count,
            observedUnit="connections", limit=hub.max_connections,
            acceptedTotal=hub.accepted_total, rejectedTotal=hub.rejected_total,
        )],
        "runtime:assets": [_check(
            "fail" if missing else "pass", now, componentType="component", runtime=config.runtime,
            output=f"missing {', '.join(missing)}; run `npm ci`" if missing else None,
        )],
        "eventloop:lag": [_loop_check(now)],
        "store:sessions": [await _store_check(now)],
        "store:budget": [_store_budget_check(now)],
        "consultant:configured": [_check("pass", now, componentType="component",
                                         consultant=current_app.extensions["chat_consultant"].name)],
        "clients:failure-reports": [_reports_check(hub.failure_reports, now)],
    }
    return checks


def _reports_check(reports, now):
    """Information, never a warning: visitors that got through only after failed attempts, since start
    (``interference`` counts those behind something that breaks WebSockets)."""
    return _check("pass", now, componentType="component", observedValue=reports.total, observedUnit="reports",
                  byClass=dict(sorted(reports.by_class.items())),
                  byTransport=dict(sorted(reports.by_transport.items())))


def _check(status, now, output=None, **fields):
    check = {"status": status, "time": now, **fields}
    if output:
        check["output"] = output
    return check


def _overall(checks):
    statuses = {check["status"] for entries in checks.values() for check in entries}
    return "fail" if "fail" in statuses else ("warn" if "warn" in statuses else "pass")


@bp.route("/healthz")
async def healthz():
    checks = await _health_checks()
    status = _overall(checks)
    body = {
        "status": status,
        "version": "1",
        "serviceId": "chat-widget",
        "description": "chat widget server: WebSocket endpoint /ws",
        "checks": checks,
    }
    return Response(json.dumps(body), status=503 if status == "fail" else 200, content_type=HEALTH_JSON,
                    headers={"Cache-Control": "no-store"})


@bp.route("/livez")
async def livez():
    return Response(json.dumps({"status": "pass"}), content_type=HEALTH_JSON, headers={"Cache-Control": "no-store"})


@bp.route("/readyz")
async def readyz():
    hub = current_app.extensions["chat_hub"]
    status = "pass" if hub.accepting else "fail"
    body = {"status": status}
    if hub.store_trouble is not None:
        body["output"] = f"conversation store unreachable: {hub.store_trouble}"
    return Response(json.dumps(body), status=200 if hub.accepting else 503,
                    content_type=HEALTH_JSON, headers={"Cache-Control": "no-store"})


@bp.route("/ws-check")
@cors_exempt
@headers.reports_instead
async def ws_check():
    """Tells any page what the socket would decide for its handshake: origin, capacity, header size.

    Browsers report a refused handshake as close code 1006, the same as a dead server; the widget asks
    here, with credentials (so the same cookies come along), to tell the causes apart. Public on
    purpose: it reveals only what a handshake attempt would. This request's headers stand in for the
    handshake's (theirs differ by a few hundred bytes: Sec-WebSocket-* against Sec-Fetch-*); a page
    whose Origin header names a refused origin is told only that, since its handshake would get no
    further.
    """
    hub = current_app.extensions["chat_hub"]
    policy = current_app.extensions["chat_origins"]
    # Browsers omit Origin on same-origin GETs, so the widget names its page's origin in the query.
    # Trusting it is harmless: this route only reports, the handshake enforces.
    origin = request.args.get("origin") or request.headers.get("Origin")
    allowed, reason = policy.check(origin, request.headers.get("Host"), request.scheme)
    body = {"origin": origin, "allowed": allowed, "reason": reason, "accepting": hub.accepting,
            "draining": hub.draining}
    caller = request.headers.get("Origin")
    if caller is None or policy.check(caller, request.headers.get("Host"), request.scheme)[0]:
        sent = request.scope["headers"]
        body.update(headers_too_large=headers.too_large(sent), header_bytes=headers.header_bytes(sent),
                    header_limit=headers.MAX_HEADER_BYTES, header_count=len(sent),
                    header_count_limit=headers.MAX_HEADERS,
                    address_full=hub.addresses.full(address_key(request.remote_addr)))
    return Response(json.dumps(body), content_type="application/json",
                    headers={"Cache-Control": "no-store", **_public_cors(caller)})


def _public_cors(caller):
    """CORS for a public route the widget fetches with credentials: the caller's origin with
    credentials (a browser refuses ``*`` with them), or ``*`` when no Origin was sent."""
    if caller is None:
        return {"Access-Control-Allow-Origin": "*", "Vary": "Origin"}
    return {"Access-Control-Allow-Origin": caller, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
