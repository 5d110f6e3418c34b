"""EWS without an EWS URL: the endpoint is found by Autodiscover from the mailbox address
(exchangelib's SOAP Autodiscover: ``https://<domain>/autodiscover/autodiscover.svc``, then
``autodiscover.<domain>``, the http redirect and the SRV record). The fake Autodiscover
service (tests/fakes/autodiscover.py) answers for ``org.example`` on its own loopback
address; for the test only, exchangelib's DNS resolver and the socket's name lookup point
``org.example`` and ``autodiscover.org.example`` there and know no other name, and requests
trusts the fake's certificate. The answer is cached (per domain and credentials); a domain
Autodiscover finds nothing for ends in the error that says to enter the EWS URL."""
from __future__ import annotations

import socket

import dns.resolver
import pytest
from exchangelib.autodiscover import Autodiscovery, clear_cache

from server.sync.connectors.base import ConnectorError
from server.sync.connectors.ews import EwsConnector
from tests.fakes.autodiscover import FakeAutodiscover
from tests.sync.ews.conftest import BOB, ews_account
from tests.sync.ews.test_ews_engine import EwsStore, tracks_a_customer_email


class Resolver:
    """exchangelib's DNS resolver for the test: A records for the fake's names only."""

    def __init__(self, names: dict[str, str]):
        self.names, self.queries = names, []

    def resolve(self, name: str, kind: str, **kw):
        self.queries.append((name, kind))
        host = name.rstrip(".")
        if kind == "A" and host in self.names:
            return [self.names[host]]
        raise dns.resolver.NXDOMAIN()


@pytest.fixture
def autodiscover(exchange, monkeypatch):
    fake = FakeAutodiscover(exchange, "org.example")
    try:
        fake.start()
    except PermissionError:
        pytest.skip("binding port 443 needs the right to (CAP_NET_BIND_SERVICE)")
    names = {host: fake.address for host in fake.hosts}
    fake.resolver = Resolver(names)
    monkeypatch.setattr(Autodiscovery, "resolver", fake.resolver)
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, *a, **kw: real(names.get(host, host), *a, **kw))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.cert.cert_path))
    clear_cache()
    yield fake
    clear_cache()
    fake.close()


def discovered(exchange, address=BOB, **settings) -> EwsConnector:
    account = ews_account(exchange, address=address, **settings)
    account.settings.pop("ews_url")
    return EwsConnector(account)


class DiscoveredStore(EwsStore):
    def profile_fields(self) -> dict:
        return {"outgoing_protocol": "ews", "settings": {"auth_type": "basic"}}


def test_a_mailbox_without_an_ews_url_syncs_through_autodiscover(crm, exchange, autodiscover):
    store = DiscoveredStore(exchange)
    tracks_a_customer_email(crm, store, "found@x.example")
    assert autodiscover.requests and set(autodiscover.requests) == {"org.example"}


def test_the_endpoint_found_is_cached_for_the_domain(exchange, autodiscover):
    with discovered(exchange) as first:
        assert first.ews.protocol.service_endpoint == exchange.url
        first.list_folders()
    looked_up = list(autodiscover.resolver.queries)
    asked = len(autodiscover.requests)
    with discovered(exchange) as second:
        assert second.ews.protocol.service_endpoint == exchange.url
    # The cached Autodiscover endpoint is asked again directly: no DNS, no search.
    assert autodiscover.resolver.queries == looked_up
    assert len(autodiscover.requests) == asked + 1


def test_a_domain_autodiscover_finds_nothing_for_says_to_enter_the_ews_url(exchange,
                                                                           autodiscover):
    exchange.add_user("ORG\\sam", "Sam's password", "sam@nowhere.example")
    with pytest.raises(ConnectorError) as caught:
        with discovered(exchange, address="sam@nowhere.example", username="ORG\\sam",
                        password="Sam's password"):
            pass
    error = caught.value
    assert error.code == "autodiscover_failed" and error.severity == "mailbox"
    assert "enter the EWS URL in the server profile" in error.message
    assert error.retry_after and not autodiscover.requests
    assert ("_autodiscover._tcp.nowhere.example.", "SRV") in autodiscover.resolver.queries


def test_an_address_autodiscover_does_not_know_is_no_mailbox(exchange, autodiscover):
    with pytest.raises(ConnectorError) as caught:
        with discovered(exchange, address="nobody@org.example"):
            pass
    assert caught.value.code == "no_mailbox" and caught.value.severity == "auth"
