"""A TCP proxy that cuts connections, to make a registry that fails in the middle of a push.
(The registry itself is image_builder.local_registry, which the demo and bench use too.)"""

import contextlib
import socket
import threading
import time

from image_builder.local_registry import free_port


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
