"""Helpers for the connector tests: accounts for the test peers, numbered messages,
``exercise``, which uses what a connector declares it can do, and ``count_reads``, the bytes
read from files."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from server.sync.connectors.base import Account, BatchKeywords, HeadersFirst, Keywords, SavesCopies
from tests.sync.conftest import build_raw


def numbered(n: int, subject: str | None = None, domain: str = "customer.example") -> bytes:
    """A small message whose Message-ID and subject carry ``n``."""
    return build_raw(f"Message number {n}.\r\n", headers={
        "Subject": subject or f"Message {n}", "Message-ID": f"<m{n}@{domain}>"})


def imap_account(server, user, **overrides) -> Account:
    fields = dict(address=user.username, host=server.host, port=server.imap_port,
                  security="none", username=user.username, password=user.password, timeout=10)
    fields.update(overrides)
    return Account(**fields)


@pytest.fixture
def message():
    return numbered


TRACKED = "Tracked to Regarding"


def exercise(conn, inbox, count: int) -> None:
    """Use what ``conn`` declares, the way the engine does, on ``count`` messages in
    ``inbox``, and check each capability did its work."""
    whole = conn.fetch_changes(inbox, None).messages
    assert len(whole) == count and all(m.complete for m in whole)
    by_ref = {m.ref: m.raw for m in whole}
    if isinstance(conn, HeadersFirst) and conn.headers_first:
        heads = conn.fetch_changes(inbox, None, headers_only=True).messages
        assert {m.ref for m in heads} == set(by_ref) and not any(m.complete for m in heads)
        for head in heads:
            assert by_ref[head.ref].startswith(head.raw.rstrip(b"\r\n"))
            assert len(head.raw) < len(by_ref[head.ref])  # the body stayed on the server
        assert conn.fetch_messages(inbox, [*by_ref, "no-such-ref"]) == by_ref
    refs = list(by_ref)
    if isinstance(conn, Keywords):
        conn.set_keyword(inbox, refs[0], TRACKED)
    if isinstance(conn, BatchKeywords):
        conn.set_keywords(inbox, refs[1:], TRACKED)
    if isinstance(conn, Keywords):
        again = conn.fetch_changes(inbox, None).messages
        assert all(TRACKED in m.keywords for m in again)
    if isinstance(conn, SavesCopies):
        sent = conn.folder_by_role("sent")
        conn.append(sent, numbered(99, subject="Sent copy"))
        assert [b"Sent copy" in m.raw for m in conn.fetch_changes(sent, None).messages] == [True]


def count_reads(monkeypatch, counted: Callable[[Path], bool]) -> Counter[Path]:
    """The bytes read from each file that ``counted`` names, from now on: counted on the
    handles ``Path.open`` gives (``Path.read_bytes`` opens files with it too)."""
    reads: Counter[Path] = Counter()
    real_open = Path.open

    def counting_open(path, *args, **kwargs):
        handle = real_open(path, *args, **kwargs)
        if counted(path):
            real_read = handle.read

            def read(*size):
                data = real_read(*size)
                reads[path] += len(data)
                return data

            handle.read = read
        return handle

    monkeypatch.setattr(Path, "open", counting_open)
    return reads
