"""Somebody else's website, for embedding tests: a real HTTP server on its own loopback port.

The chat server runs at ``http://localhost:B`` (see ``chat_url``) and the host site at
``http://127.0.0.1:A``, so the host page and the widget are on different origins (different sites,
even), as on a real shop. Pages are added by path with their HTML and extra response headers (a
strict ``Content-Security-Policy``, say); ``/node_modules/...`` serves the project's npm packages, for
a host page that loads a PyScript of its own.

    with HostSite() as site:
        url = site.page("/shop.html", html, headers={"Content-Security-Policy": "..."})
"""

import mimetypes
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def chat_url(server):
    """The chat server's URL under the name ``localhost`` (the host site uses ``127.0.0.1``)."""
    return server.url.replace("127.0.0.1", "localhost")


def snippet(server, **attributes):
    """The one tag, as a site owner pastes it: ``snippet(server, lang="de", load="click")``."""
    extra = "".join(f' data-{name.replace("_", "-")}="{value}"' for name, value in attributes.items())
    return f'<script src="{chat_url(server).rstrip("/")}/embed.js" async{extra}></script>'


def page_html(body, head="", lang="en"):
    return (f'<!doctype html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>A shop</title>\n'
            f'{head}\n</head>\n<body>\n{body}\n</body>\n</html>\n')


class HostSite:
    """``cache_control`` goes on every answer (``no-store``: each test's page is fetched anew; the
    benchmarks use ``no-cache``). HTTP/1.1 with keep-alive, as a real site's server."""

    def __init__(self, cache_control="no-store"):
        self.pages = {}  # path -> (bytes, content type, headers)
        self.requests = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                site.requests.append(path)
                if path == "/favicon.ico":  # browsers ask for it; a 404 would be a console line
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path in site.pages:
                    body, kind, headers = site.pages[path]
                elif path.startswith("/node_modules/") and ".." not in path:
                    file = ROOT / path.lstrip("/")
                    if not file.is_file():
                        return self.send_error(404)
                    body, headers = file.read_bytes(), {}
                    kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                    if file.suffix in (".js", ".mjs"):
                        kind = "text/javascript"
                    elif file.suffix == ".wasm":
                        kind = "application/wasm"
                else:
                    return self.send_error(404)
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", cache_control)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="host-site", daemon=True)

    def page(self, path, html, headers=None, content_type="text/html; charset=utf-8"):
        """Serve ``html`` (text, or bytes) at ``path``; returns its URL."""
        body = html if isinstance(html, bytes) else html.encode("utf-8")
        self.pages[path] = (body, content_type, dict(headers or {}))
        return self.origin + path

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# A site's own catalogue for a right-to-left language (server setting `catalogues`, `--catalogues DIR`):
# a few keys translated, the rest falls back to English.
HEBREW = {
    "dir": "rtl",
    "launcher": "שוחחו איתנו",
    "unread_one": "הודעה חדשה אחת",
    "unread_other": "{count} הודעות חדשות",
    "new_message": "הודעה חדשה מהיועץ שלנו",
    "title": "שאלו את היועץ שלנו",
    "panel": "צ'אט עם היועץ שלנו",
    "close": "סגירת הצ'אט",
    "message_label": "ההודעה שלכם",
    "placeholder": "הקלידו את שאלתכם…",
    "send": "שליחה",
    "status": {"idle": "הצ'אט מוכן", "connecting": "מתחבר…", "connected": "מחובר", "reconnecting": "מתחבר מחדש…"},
}


def write_catalogue(folder, lang, words):
    """Write ``<folder>/<lang>.json`` (a site's catalogue); returns the folder, for ``--catalogues``."""
    import json
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{lang}.json").write_text(json.dumps(words, ensure_ascii=False, indent=2), encoding="utf-8")
    return str(folder)
