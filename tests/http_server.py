"""A loopback HTTP server for tests: serves files from memory and misbehaves on request.

Only 127.0.0.1, an OS-chosen port, a daemon thread; every wait is bounded and the server shuts
itself down after ``lifetime`` seconds even if a test forgets to stop it.

Knobs (attributes of ``LoopbackServer``, changeable while it runs):
- ``status``: answer every request with this HTTP status (e.g. 404) and no body;
- ``drop_after``: send the full Content-Length header, then only this many body bytes and
  close the connection; applies to the next ``drop_times`` requests;
- ``wrong_body``: serve these bytes instead of the file's;
- ``stall``: accept, read the request, then send nothing for this many seconds;
- ``chunk_delay``: sleep between 64 KiB chunks (to make transfers overlap);
- ``ranges``: honour ``Range: bytes=N-`` with 206 (default True).
``requests`` records (path, headers) of every request.
"""

from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 1 << 16


class LoopbackServer:
    def __init__(self, files: dict[str, bytes] | None = None, lifetime: float = 60.0) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.status: int | None = None
        self.drop_after: int | None = None
        self.drop_times = 1
        self.wrong_body: bytes | None = None
        self.stall: float | None = None
        self.chunk_delay = 0.0
        self.ranges = True
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if not self._stopping.is_set():
            self._stopping.set()  # wakes stalled handlers
            self._timer.cancel()
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests_for(self, name: str) -> list[dict[str, str]]:
        return [headers for path, headers in self.requests if path.rsplit("/", 1)[-1] == name]

    def _take_drop(self) -> int | None:
        with self._lock:
            if self.drop_after is None or self.drop_times <= 0:
                return None
            self.drop_times -= 1
            return self.drop_after

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append((self.path, dict(self.headers.items())))
                if server.stall:
                    server._stopping.wait(server.stall)
                    self.close_connection = True
                    return
                name = self.path.rsplit("/", 1)[-1]
                if server.status is not None or name not in server.files:
                    self.send_response(server.status or 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.wrong_body if server.wrong_body is not None else server.files[name]
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if match and server.ranges:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self._send(body[start:], server._take_drop())

            def _send(self, payload: bytes, drop_after: int | None) -> None:
                limit = len(payload) if drop_after is None else min(drop_after, len(payload))
                for i in range(0, limit, CHUNK):
                    self.wfile.write(payload[i:min(i + CHUNK, limit)])
                    if server.chunk_delay and server._stopping.wait(server.chunk_delay):
                        break
                self.wfile.flush()
                if drop_after is not None:  # hang up mid-body, as a flaky network would
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        return Handler
