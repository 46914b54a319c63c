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
- ``hold``: a ``threading.Event``: after the first 64 KiB chunk of a body, wait until it is set
  (a transfer that lasts exactly as long as a test needs, however busy the machine);
- ``ranges``: honour ``Range: bytes=N-`` with 206 (default True);
- ``trickle``: send the body one byte at a time, this many seconds apart;
- ``oversize``: serve this many bytes (zeros) instead of the file, ``send_length`` saying
  whether a Content-Length announces them (else the body runs until the connection closes);
- ``hub_commit``: also speak the Hugging Face Hub's resolve URLs,
  ``/{owner}/{repo}/resolve/{revision}/{path}`` (HEAD and GET, with ``X-Repo-Commit``, an
  ``ETag`` that is the file's sha256 and ``X-Linked-Size``), as huggingface_hub's
  ``hf_hub_download`` requests them; ``hub_token``: then require ``Authorization: Bearer`` it
  (401 otherwise, as for a private repository).
``requests`` records (path, headers) of every GET, ``log`` (method, path, headers) of every
request, ``sent`` the body bytes written for each response. ``tls=(certfile, keyfile)`` serves
HTTPS.

``LoopbackProxy`` is a forwarding HTTP proxy on 127.0.0.1 (absolute-form GET and CONNECT
tunnels) that records what it was asked for in ``requests`` as (method, target).
"""

from __future__ import annotations

import hashlib
import http.client
import re
import selectors
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

CHUNK = 1 << 16


class LoopbackServer:
    def __init__(self, files: dict[str, bytes] | None = None, lifetime: float = 60.0,
                 tls: tuple[str, str] | None = None) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.trickle: float | None = None
        self.oversize: int | None = None
        self.send_length = True
        self.hub_commit: str | None = None
        self.hub_token: str | None = None
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.sent: list[int] = []
        self._scheme = "https" if tls else "http"
        self.status: int | None = None
        self.drop_after: int | None = None
        self.drop_times = 1
        self.wrong_body: bytes | None = None
        self.stall: float | None = None
        self.chunk_delay = 0.0
        self.hold: threading.Event | None = None
        self.ranges = True
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    @property
    def url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._httpd.server_address[1]}"

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

            def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
                self._serve(head=True)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._serve(head=False)

            def _hub_headers(self, body: bytes) -> bool:
                """Hub resolve URLs: authorise, then send the Hub's headers; False if refused."""
                if not server.hub_commit or "/resolve/" not in self.path:
                    return True
                wanted = f"Bearer {server.hub_token}"
                if server.hub_token and self.headers.get("Authorization") != wanted:
                    self.send_response(401)
                    self.send_header("X-Error-Code", "RepoNotFound")
                    self.send_header("X-Error-Message", "Repository not found")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return False
                self._hub = {"X-Repo-Commit": server.hub_commit,
                             "ETag": f'"{hashlib.sha256(body).hexdigest()}"',
                             "X-Linked-Size": str(len(body))}
                return True

            def _serve(self, head: bool) -> None:
                self._hub: dict[str, str] = {}
                headers = dict(self.headers.items())
                server.log.append(("HEAD" if head else "GET", self.path, headers))
                if not head:
                    server.requests.append((self.path, headers))
                if server.stall:
                    server._stopping.wait(server.stall)
                    self.close_connection = True
                    return
                name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
                if server.status is not None or name not in server.files:
                    self.send_response(server.status or 404)
                    if server.hub_commit and "/resolve/" in self.path:
                        self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.wrong_body if server.wrong_body is not None else server.files[name]
                if server.oversize is not None:
                    body = bytes(server.oversize)
                if not self._hub_headers(body):
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if match and server.ranges and server.oversize is None:
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
                for key, value in self._hub.items():
                    self.send_header(key, value)
                if server.send_length:
                    self.send_header("Content-Length", str(len(body) - start))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if head:
                    return
                self._send(body[start:], server._take_drop())

            def _send(self, payload: bytes, drop_after: int | None) -> None:
                limit = len(payload) if drop_after is None else min(drop_after, len(payload))
                step = 1 if server.trickle else CHUNK
                sent = 0
                try:
                    for i in range(0, limit, step):
                        self.wfile.write(payload[i:min(i + step, limit)])
                        sent += min(step, limit - i)
                        if server.trickle:
                            self.wfile.flush()
                        delay = server.trickle or server.chunk_delay
                        if delay and server._stopping.wait(delay):
                            break
                        if server.hold is not None and i == 0:
                            self.wfile.flush()
                            while not server.hold.wait(0.05):
                                if server._stopping.is_set():
                                    break
                    self.wfile.flush()
                except OSError:  # the client hung up (as it should on an oversize body)
                    self.close_connection = True
                    return
                finally:
                    server.sent.append(sent)
                if drop_after is not None:  # hang up mid-body, as a flaky network would
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        return Handler


HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
              "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade"}


class LoopbackProxy:
    """A forwarding proxy on 127.0.0.1 that only forwards to 127.0.0.1 (absolute-form requests
    and CONNECT tunnels), recording each as (method, target); bounded lifetime like the server."""

    def __init__(self, lifetime: float = 60.0) -> None:
        self.requests: list[tuple[str, str]] = []
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> LoopbackProxy:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            self._timer.cancel()
            self._httpd.shutdown()
            self._httpd.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _refuse(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                self._forward("GET")

            def do_HEAD(self) -> None:  # noqa: N802
                self._forward("HEAD")

            def _forward(self, method: str) -> None:
                proxy.requests.append((method, self.path))
                target = urlsplit(self.path)
                if target.scheme != "http" or target.hostname != "127.0.0.1":
                    self._refuse(403)  # never anywhere but this machine
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in HOP_BY_HOP}
                    path = target.path + (f"?{target.query}" if target.query else "")
                    upstream.request(method, path, headers=headers)
                    resp = upstream.getresponse()
                    self.send_response(resp.status, resp.reason)
                    for key, value in resp.getheaders():
                        if key.lower() not in HOP_BY_HOP:
                            self.send_header(key, value)
                    if resp.getheader("Content-Length") is None:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    if method != "HEAD":
                        while chunk := resp.read(CHUNK):
                            self.wfile.write(chunk)
                except OSError:
                    self.close_connection = True
                finally:
                    upstream.close()

            def do_CONNECT(self) -> None:  # noqa: N802
                proxy.requests.append(("CONNECT", self.path))
                host, _, port = self.path.rpartition(":")
                if host != "127.0.0.1" or not port.isdigit():
                    self._refuse(403)
                    return
                upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
                self.send_response(200, "Connection Established")
                self.end_headers()
                self.close_connection = True
                sel = selectors.DefaultSelector()
                sel.register(self.connection, selectors.EVENT_READ, upstream)
                sel.register(upstream, selectors.EVENT_READ, self.connection)
                try:
                    while not proxy._stopping.is_set():
                        events = sel.select(timeout=0.5)
                        for key, _ in events:
                            data = key.fileobj.recv(CHUNK)
                            if not data:
                                return
                            key.data.sendall(data)
                except OSError:
                    pass
                finally:
                    sel.close()
                    upstream.close()

        return Handler
