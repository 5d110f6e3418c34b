"""A counting TCP proxy in front of a real peer (Dovecot's IMAP): what the server sent,
in bytes, and how many whole messages (``BODY[]`` literals, as ``BODY.PEEK[]`` answers) and
bytes of them it sent, so a test or the ingest benchmark can check that a sync reads no
mail whole it had no need to.

Plain TCP only (no TLS): it sees the protocol in the clear. ``reset()`` starts counting
afresh; counts cover every connection made through the proxy since then.

It can also cut a connection in the middle of an answer, as a server or network that
drops it does (any peer: a CalDAV server, say): ``drop_after(n)`` arms it, and the answer
is cut after ``n`` more bytes from the server (the connection closed); later connections
pass whole again. ``dropped`` counts the cuts.
"""
from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass

from .ports import LOOPBACK, free_port

# An IMAP FETCH answer's whole message: "BODY[] {<octets>}" then the literal.
_WHOLE = re.compile(rb"BODY\[\] \{(\d+)\}\r\n")


@dataclass
class Counts:
    sent: int = 0  # bytes the server sent
    whole_messages: int = 0  # whole messages (BODY[] literals) among them
    whole_bytes: int = 0  # and their octets


class CountingProxy:
    """``with CountingProxy(host, port) as proxy:`` connect to ``proxy.port`` instead."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.host, self.port = LOOPBACK, free_port()
        self.counts = Counts()
        self.dropped = 0
        self.pieces: tuple[int, float] | None = None  # (bytes, pause): the server dribbles
        self._budget: int | None = None  # bytes from the server until a cut, when armed
        self._lock = threading.Lock()
        self._listener = socket.create_server((self.host, self.port))
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> CountingProxy:
        thread = threading.Thread(target=self._accept, daemon=True, name="counting-proxy")
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self._listener.close()

    def reset(self) -> Counts:
        """The counts so far; counting starts afresh."""
        with self._lock:
            counts, self.counts = self.counts, Counts()
        return counts

    def dribble(self, size: int = 3, pause: float = 0.02) -> None:
        """From now on the server's bytes arrive ``size`` at a time, ``pause`` seconds
        apart: a line cut across TCP segments, as slow or far networks deliver it."""
        self.pieces = (size, pause)

    def drop_after(self, size: int) -> None:
        with self._lock:
            self._budget = size

    def _allowed(self, size: int) -> int:
        """How much of ``size`` bytes from the server passes before an armed cut."""
        with self._lock:
            if self._budget is None:
                return size
            if size > self._budget:
                passed, self._budget, self.dropped = self._budget, None, self.dropped + 1
                return passed
            self._budget -= size
            return size

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for source, sink, count in ((client, server, False), (server, client, True)):
                thread = threading.Thread(target=self._pipe, args=(source, sink, count),
                                          daemon=True, name="counting-proxy-pipe")
                thread.start()

    def _pipe(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        tail = b""  # the end of the last chunk: a "BODY[] {n}" split between two chunks
        try:
            while chunk := source.recv(65536):
                if count:
                    self._count(tail + chunk, len(chunk), len(tail))
                    tail = chunk[-32:]
                    passed = self._allowed(len(chunk))
                    if passed < len(chunk):
                        sink.sendall(chunk[:passed])
                        break  # the connection is dropped below
                if count and self.pieces:
                    size, pause = self.pieces
                    for start in range(0, len(chunk), size):
                        sink.sendall(chunk[start:start + size])
                        time.sleep(pause)
                    continue
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _count(self, data: bytes, size: int, overlap: int) -> None:
        # A marker that ends inside the overlap was counted with the chunk before.
        found = [m for m in _WHOLE.finditer(data) if m.end() > overlap]
        with self._lock:
            self.counts.sent += size
            self.counts.whole_messages += len(found)
            self.counts.whole_bytes += sum(int(m.group(1)) for m in found)
