"""A TCP proxy on 127.0.0.1 that can go silent: it keeps every connection open but stops
relaying in both directions, as a stuck proxy, firewall or half-dead network path does."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class SilentProxy:
    """Relays 127.0.0.1:`port` to 127.0.0.1:`upstream_port` until it goes silent: when `silence()`
    is called, or when a client sends `silent_on` (that data is not relayed)."""

    def __init__(self, upstream_port: int, *, silent_on: bytes | None = None) -> None:
        self.upstream_port = upstream_port
        self.silent_on = silent_on
        self.silent_since: float | None = None  # time.monotonic() when it went silent
        self._relaying = threading.Event()
        self._relaying.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def silence(self) -> None:
        with self._lock:
            if self.silent_since is None:
                self.silent_since = time.monotonic()
            self._relaying.clear()

    def relay_again(self) -> None:
        """Relay again, for new connections (the silenced ones stay stuck, as in real life)."""
        with self._lock:
            self.silent_on = None
            self.silent_since = None
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets.clear()
            self._relaying.set()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.relay_again()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._sockets += [client, upstream]
            thread = threading.Thread(target=self._relay, args=(client, upstream), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with contextlib.suppress(OSError, ValueError), client, upstream:
            while not self._closed.is_set():
                if not self._relaying.is_set():
                    # Silent: read nothing, send nothing, close nothing.
                    self._relaying.wait(0.2)
                    if client.fileno() < 0:
                        return
                    continue
                ready, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client and self.silent_on and self.silent_on in data:
                        self.silence()
                        break
                    peers[sock].sendall(data)
