"""A TCP proxy in front of a real peer that can cut a connection in the middle of an
answer, as a server or network that drops it does: ``proxy.drop_after(n)`` arms it, and the
next answer is cut after ``n`` bytes (the connection closed, as by a reset). Connections
after that pass whole again."""
from __future__ import annotations

import socket
import threading

from .ports import LOOPBACK, free_port


class DroppingProxy:
    """``with DroppingProxy(host, port) as proxy:`` connect to ``proxy.port`` instead."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.host, self.port = LOOPBACK, free_port()
        self.dropped = 0
        self._budget: int | None = None
        self._lock = threading.Lock()
        self._listener = socket.create_server((self.host, self.port))
        self._stopped = threading.Event()

    def __enter__(self) -> DroppingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self._listener.close()

    def drop_after(self, size: int) -> None:
        with self._lock:
            self._budget = size

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if answers:
                    with self._lock:
                        budget = self._budget
                        if budget is not None and len(data) > budget:
                            self._budget, self.dropped = None, self.dropped + 1
                    if budget is not None and len(data) > budget:
                        sink.sendall(data[:budget])
                        break
                    if budget is not None:
                        with self._lock:
                            self._budget = budget - len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()
