#!/usr/bin/env python3
"""Serve the web demo cross-origin isolated (COOP + COEP), so LiteRT.js can use wasm threads.

Standard library only: ``python3 web_demo/serve.py [--host 127.0.0.1] [--port 8765] [--assets DIR]``.
The page's content security policy (the ``<meta>`` tag in ``index.html``) is also sent as a header, so
the page can reach nothing but this server (MediaPipe's telemetry included).

A phone on the same network needs a secure context for threads and the camera: serve with
``--host 0.0.0.0 --cert CERT.pem --key KEY.pem`` (e.g. made by mkcert), or keep 127.0.0.1 and forward the
port over USB (``adb reverse tcp:8765 tcp:8765``, then open http://localhost:8765 on the phone).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import re
import ssl
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
         ".json": "application/json", ".tflite": "application/octet-stream", ".task": "application/octet-stream",
         ".css": "text/css", ".html": "text/html; charset=utf-8", ".png": "image/png", ".jpg": "image/jpeg"}


def page_csp(index: Path = ROOT / "index.html") -> str:
    """The content security policy of ``index.html``'s meta tag (one source for the page and the header)."""
    m = re.search(r'<meta\s+http-equiv="Content-Security-Policy"\s+content="([^"]+)"', index.read_text("utf-8"))
    if not m:
        raise SystemExit(f"error: {index} has no Content-Security-Policy meta tag")
    return m.group(1)


class Handler(http.server.SimpleHTTPRequestHandler):
    csp = ""
    assets: Path | None = None

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if self.assets is not None and clean.startswith("/assets/"):
            rel = Path(clean[len("/assets/"):])
            if ".." in rel.parts:
                return str(self.assets / "__forbidden__")
            return str(self.assets / rel)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Content-Security-Policy", self.csp)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, fmt: str, *args) -> None:  # quiet unless asked
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(fmt, *args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 for a phone on this network)")
    ap.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    ap.add_argument("--assets", type=Path, default=ROOT / "assets",
                    help="folder served as /assets/ (model, model card, landmarker, sample photo)")
    ap.add_argument("--cert", type=Path, help="TLS certificate (PEM): serve https")
    ap.add_argument("--key", type=Path, help="TLS private key (PEM)")
    ap.add_argument("--verbose", action="store_true", help="log every request")
    args = ap.parse_args(argv)

    if not (args.assets / "tinybeauty.tflite").is_file():
        print(f"warning: {args.assets}/tinybeauty.tflite is missing: run `make web-assets` (or drop a model "
              f"onto the page)", file=sys.stderr)
    handler = functools.partial(type("DemoHandler", (Handler,), {"csp": page_csp(), "assets": args.assets.resolve()}),
                                directory=str(ROOT))
    server = http.server.ThreadingHTTPServer((args.host, args.port), handler)
    server.verbose = args.verbose  # type: ignore[attr-defined]
    scheme = "http"
    if args.cert or args.key:
        if not (args.cert and args.key):
            raise SystemExit("error: --cert and --key go together")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    print(f"serving {scheme}://{shown}:{port}/ (cross-origin isolated); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
