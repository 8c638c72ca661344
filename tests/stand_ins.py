"""What the tests put where Azure would be: `StandIn`, the base of the local HTTP(S) endpoints
that speak Azure's protocols; `AzureHostsProxy`, which takes an SDK's HTTPS for an Azure host name
to one of them; and `CuttingProxy`, a TCP proxy that cuts connections, to make a registry that
fails in the middle of a push. (The registry itself is image_builder.local_registry, which the
demo and bench use too.)"""

import contextlib
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from image_builder.local_registry import free_port
from prefect_aci.local_aci.tls import LocalTls

# shutdown() returns only at serve_forever's next poll: at the default 0.5 s every teardown of a
# stand-in cost up to a second.
POLL_INTERVAL = 0.02


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query, still percent-encoded; for CONNECT, the host:port asked for
    query: dict[str, str]
    headers: HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode()))


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None  # bytes go as they are, anything else but None as JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    tunnel: tuple[str, int] | None = None  # for CONNECT: 200, then relay the connection there


class StandIn:
    """An HTTP server on a free loopback port (HTTPS with ``tls``) that records every request in
    ``received`` and answers it with what ``answer`` returns, until ``close``."""

    def __init__(self, tls: LocalTls | None = None) -> None:
        self.received: list[Request] = []
        self.scheme = "https" if tls else "http"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.stand_in = self
        if tls:
            # The handshake waits for the request's own thread (see _Handler.setup), so that a
            # client that never sends one cannot hold up the accept loop.
            self.server.socket = tls.server_context().wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
        threading.Thread(
            target=self.server.serve_forever, args=(POLL_INTERVAL,), daemon=True
        ).start()

    def answer(self, request: Request) -> Answer:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass  # the tests read requests from StandIn.received; a line each on stderr is noise

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def _handle(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=self.path if self.command == "CONNECT" else url.path,
            query=dict(urllib.parse.parse_qsl(url.query)) if self.command != "CONNECT" else {},
            headers=self.headers,
            body=self.rfile.read(length) if length else b"",
        )
        self.server.stand_in.received.append(request)
        answer = self.server.stand_in.answer(request)
        if answer.tunnel:
            self._tunnel(answer.tunnel)
            return
        headers = dict(answer.headers)
        if answer.body is None or isinstance(answer.body, bytes):
            data = answer.body or b""
        else:
            data = json.dumps(answer.body).encode()
            headers = {"Content-Type": "application/json", **headers}
        self.send_response(answer.status)
        for name, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_CONNECT = _handle

    def _tunnel(self, address: tuple[str, int]) -> None:
        try:
            upstream = socket.create_connection(address)
        except OSError as error:
            self.send_error(502, f"no connection to {address}: {error}")
            return
        with upstream:
            # A relay forwards what each side wrote as it came: without this, Nagle's algorithm
            # meets the peer's delayed ACK and every small request waits ~40 ms.
            for sock in (upstream, self.connection):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.send_response(200, "Connection established")
            self.end_headers()
            back = threading.Thread(target=_relay, args=(upstream, self.connection), daemon=True)
            back.start()
            _relay(self.connection, upstream)
            back.join()


def _relay(source: socket.socket, sink: socket.socket) -> None:
    """Copies until ``source`` ends, then ends ``sink``'s sending side, as a TCP relay does."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class AzureHostsProxy(StandIn):
    """An HTTP proxy on loopback for SDKs that take the usual proxy variables: it opens CONNECT
    tunnels for the host:port names in ``routes`` to the local address each maps to, and refuses
    anything else, so what a test runs through it cannot reach the real Azure."""

    def __init__(self, routes: Mapping[str, tuple[str, int]]) -> None:
        self.routes = dict(routes)
        super().__init__()

    def answer(self, request: Request) -> Answer:
        target = self.routes.get(request.path) if request.method == "CONNECT" else None
        if target is None:
            return Answer(403, b"this proxy only tunnels to " + ", ".join(self.routes).encode())
        return Answer(200, tunnel=target)

    def env(self) -> dict[str, str]:
        """Environment that sends HTTP(S) through this proxy, except to loopback, where the other
        stand-ins listen. Both spellings: where both are set, Python's urllib takes lowercase."""
        proxy = f"http://{self.host}"
        env = {"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "NO_PROXY": "127.0.0.1,localhost"}
        return {**env, **{name.lower(): value for name, value in env.items()}}


class CuttingProxy:
    """Forwards 127.0.0.1:port to a target; once ``cut_after`` bytes went upstream it drops
    every connection and refuses new ones for ``outage`` seconds (forever when None)."""

    def __init__(self, target_port: int, cut_after: int, outage: float | None) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.cut_after = cut_after
        self.outage = outage
        self.sent = 0
        self.cut_at: float | None = None
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _down(self) -> bool:
        if self.cut_at is None:
            return False
        return self.outage is None or time.monotonic() - self.cut_at < self.outage

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self._down():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if upstream:
                    with self.lock:
                        self.sent += len(data)
                        if self.cut_at is None and self.sent >= self.cut_after:
                            self.cut_at = time.monotonic()
                            self._drop_all()
                            return
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()

    def _drop_all(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()

    def close(self) -> None:
        self.running = False
        self.server.close()
        with self.lock:
            self._drop_all()
