"""A tiny HTTP server that plays a test image on the local node (standard library only).

GET /          -> JSON: pod name (POD_NAME), hostname, pid
GET /ready     -> 200 when READY_FILE is unset or exists, else 503
GET /fetch?url=U       -> the body of U fetched from inside the pod (502 on failure)
GET /resolve?name=N    -> JSON list of the addresses N resolves to inside the pod
Every request is logged to stdout. IGNORE_SIGTERM=1 makes it ignore SIGTERM (to test SIGKILL).
"""

import json
import os
import signal
import socket
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        if url.path == "/ready":
            f = os.environ.get("READY_FILE")
            ok = not f or os.path.exists(f)
            self._send(200 if ok else 503, b"ok" if ok else b"not ready", "text/plain")
        elif url.path == "/fetch":
            try:
                with urllib.request.urlopen(q["url"][0], timeout=5) as r:
                    self._send(200, r.read())
            except Exception as e:
                self._send(502, str(e).encode(), "text/plain")
        elif url.path == "/resolve":
            try:
                infos = socket.getaddrinfo(q["name"][0], None, socket.AF_INET)
                self._send(200, json.dumps(sorted({i[4][0] for i in infos})).encode())
            except OSError as e:
                self._send(502, str(e).encode(), "text/plain")
        else:
            body = {
                "pod": os.environ.get("POD_NAME", ""),
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
            }
            self._send(200, json.dumps(body).encode())

    def log_message(self, format: str, *args: object) -> None:
        print(f"request {self.command} {self.path}", flush=True)


def main() -> None:
    if os.environ.get("IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"listening on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
