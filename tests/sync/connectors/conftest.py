"""Helpers for the connector tests: accounts for the test peers and numbered messages."""
from __future__ import annotations

import pytest

from server.sync.connectors.base import Account
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
