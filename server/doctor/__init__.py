"""``chat-widget doctor``: finds out why a site's chat cannot connect, one check at a time.

Browsers report every failed chat socket as close code 1006, whatever the cause; the doctor walks the
path a visitor's browser takes (URL, DNS, TCP, HTTP, CORS, the Origin policy, the HTTP fallback, the
WebSocket upgrade, the protocol, a socket held open a few seconds, idle sockets through proxies) and
says which step breaks and how to fix it. The checks are in ``checks.py``; this module runs them and
prints the report.
"""

import asyncio
import json

import click

from protocol.close import FAILURES

from ..transport.origins import OriginError, format_origin, parse_origin
from .checks import FAIL, PASS, SKIP, WARN, Check, Probe, check_names, parse_target

__all__ = ["Check", "Probe", "diagnose", "doctor", "parse_target"]


async def diagnose(url, origin=None, socket_url=None, idle=None, timeout=5.0):
    """Run every check against ``url``; return the list of ``Check``."""
    target, url_check = parse_target(url, origin, socket_url, idle, timeout)
    if target is None:
        return [url_check] + [Check(name, SKIP, "skipped: url did not pass") for name in check_names(idle)[1:]]
    async with Probe(target) as probe:
        return await probe.run([url_check])


def render_text(url, checks):
    width = max(len(check.name) for check in checks)
    lines = [f"chat-widget doctor: {url}"]
    for check in checks:
        lines.append(f"{check.status.upper():<4}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != PASS:
            lines.append(f"{'':<{6 + width}}  fix: {check.fix}")
        if check.failure and check.status != PASS:
            lines.append(f"{'':<{6 + width}}  class: {check.failure} ({FAILURES[check.failure]})")
    counts = {status: sum(check.status == status for check in checks) for status in (FAIL, WARN, PASS, SKIP)}
    verdict = "FAILED" if counts[FAIL] else "ok"
    lines.append(f"{verdict}: " + ", ".join(f"{count} {status}" for status, count in counts.items() if count))
    return "\n".join(lines)


def render_json(url, checks):
    return json.dumps({"url": url, "ok": not any(check.status == FAIL for check in checks),
                       "checks": [check.as_dict() for check in checks]})


def _validate_origin(ctx, param, value):
    if value is None:
        return None
    try:
        return format_origin(*parse_origin(value))
    except OriginError as error:
        raise click.BadParameter(str(error)) from None


@click.command()
@click.argument("url")
@click.option("--origin", callback=_validate_origin,
              help="Origin of the page the widget runs on (default: the URL's own origin).")
@click.option("--socket-url", help="The chat socket's URL (default: ws(s)://HOST:PORT/ws?v=1 from URL).")
@click.option("--idle", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Also keep the socket silent this long, then ping: finds proxies that cut idle sockets.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              metavar="SECONDS", help="Longest wait for each network step.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
def doctor(url, origin, socket_url, idle, timeout, as_json):
    """Check that the chat at URL (the server's base URL) works from a visitor's browser.

    Checks: url, scheme, dns, tcp, health, cors, origin, fallback (a welcome over the HTTP fallback,
    /poll), handshake, welcome, ping, hold (the socket kept open 3 s with pings) and, with --idle,
    idle. Each passes, warns, fails or is skipped (when a check it depends on did not pass); every
    warning and failure comes with a fix, and with the widget's failure class when the finding
    explains one (interference: a proxy that refuses the upgrade, withholds the server's frames or
    cuts live connections).

    Exit status: 0 when no check failed (warnings allowed), 1 when any check failed, 2 for bad usage.
    """
    checks = asyncio.run(diagnose(url, origin, socket_url, idle, timeout))
    click.echo(render_json(url, checks) if as_json else render_text(url, checks))
    raise SystemExit(1 if any(check.status == FAIL for check in checks) else 0)
