"""Fixtures for the EWS tests: the fake Exchange endpoint (tests/fakes/ews.py) served on a
loopback port, Bob's mailbox on it, and the connector ``Account`` that reaches it."""
from __future__ import annotations

import pytest

from server.sync.connectors.base import Account
from tests.fakes.ews import FakeExchange, serve

BOB = "bob@org.example"
PASSWORD = "Bob's passw0rd"


@pytest.fixture
def exchange():
    """The fake Exchange Server: Bob (his own mailbox) and a service account allowed to
    impersonate; ``exchange.url`` is its EWS endpoint."""
    fake = FakeExchange()
    fake.add_user("ORG\\bob", PASSWORD, BOB)
    fake.add_user("ORG\\crm-service", "service secret", impersonate=True)
    served = serve(fake)
    yield fake
    served.stop()


def ews_account(exchange, address=BOB, username="ORG\\bob", password=PASSWORD,
                **settings) -> Account:
    return Account(address=address, username=username, password=password, timeout=10,
                   settings={"ews_url": exchange.url, "auth_type": "basic", **settings})


@pytest.fixture
def account(exchange) -> Account:
    return ews_account(exchange)
