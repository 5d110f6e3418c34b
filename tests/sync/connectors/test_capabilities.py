"""What each connector declares it can do (``connectors/base``'s capability classes), held
against what it implements and against the real peers: every declared capability works
through the methods it names, nothing implemented goes undeclared (the engine, which asks
``isinstance``, would miss it), unknown protocols get a clear error, and no code in the
sync package probes a connector's attributes to guess (what connectors may import is
``tests/test_architecture.py``'s)."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.sync import connectors
from server.sync.connectors.base import (Account, AssignsMessageIds, BatchKeywords, Connector,
                                         ConnectorError, HeadersFirst, Keywords, Needs,
                                         ReadsAhead, SavesCopies, Sender, Subscriptions)
from server.sync.connectors.maildir import MaildirConnector, create_maildir, deliver
from server.sync.connectors.pop3 import Pop3Connector
from server.sync.models import INCOMING_PROTOCOLS, OUTGOING_PROTOCOLS
from tests.sync.connectors.conftest import exercise, imap_account, numbered
from tests.sync.connectors.test_pop3 import pop3_account
from tests.sync.ews.conftest import BOB, ews_account, exchange  # noqa: F401 (fixture)
from tests.sync.world import raw

ROOT = Path(__file__).resolve().parents[3]
SYNC = ROOT / "server" / "sync"
CAPABILITIES = (Keywords, BatchKeywords, HeadersFirst, ReadsAhead, SavesCopies, Subscriptions)

# What each protocol's connector and sender can do: a change here is a change of behaviour.
INCOMING = {
    "imap": {Keywords, BatchKeywords, HeadersFirst, ReadsAhead, SavesCopies},
    "pop3": {HeadersFirst},
    "maildir": {Keywords, BatchKeywords, HeadersFirst, SavesCopies},
    "graph": {Keywords, BatchKeywords, Subscriptions},
    "ews": {Keywords, BatchKeywords},
}
OUTGOING = {"smtp": set(), "maildir": set(), "graph": {AssignsMessageIds}, "ews": set()}


def test_the_registry_serves_every_protocol_a_profile_may_name():
    assert set(INCOMING) == set(INCOMING_PROTOCOLS) and set(OUTGOING) == set(OUTGOING_PROTOCOLS)


@pytest.mark.parametrize("protocol", sorted(INCOMING))
def test_each_connector_declares_what_it_implements(protocol):
    cls = connectors.incoming(protocol)
    assert issubclass(cls, Connector) and isinstance(cls.needs, Needs)
    assert not inspect.isabstract(cls), cls.__abstractmethods__  # declared means implemented
    declared = {c for c in CAPABILITIES if issubclass(cls, c)}
    assert declared == INCOMING[protocol]
    for capability in set(CAPABILITIES) - declared:  # implemented means declared
        methods = capability.__abstractmethods__  # (none: a marker, only ever declared)
        assert not (methods and methods <= set(dir(cls))), (protocol, capability.__name__)


@pytest.mark.parametrize("protocol", sorted(OUTGOING))
def test_each_sender_declares_what_it_implements(protocol):
    cls = connectors.outgoing(protocol)
    assert issubclass(cls, Sender) and isinstance(cls.needs, Needs)
    assert not inspect.isabstract(cls), cls.__abstractmethods__
    assert {c for c in (AssignsMessageIds,) if issubclass(cls, c)} == OUTGOING[protocol]


def test_what_an_account_needs_is_declared_per_class():
    imap, pop3, smtp = (connectors.incoming("imap"), connectors.incoming("pop3"),
                        connectors.outgoing("smtp"))
    assert all(c.needs.host for c in (imap, pop3, smtp))
    assert not connectors.incoming("ews").needs.host  # its ews_url setting, or Autodiscover
    assert imap.needs.ports == {"tls": 993, "starttls": 143, "none": 143}
    assert pop3.needs.ports == {"tls": 995, "starttls": 110, "none": 110}
    assert smtp.needs.ports == {"tls": 465, "starttls": 587, "none": 25}
    store = "/srv/mail"
    assert str(connectors.incoming("maildir").needs.store(store, " Bob@Org.example")) \
        == "/srv/mail/bob@org.example"
    assert str(connectors.outgoing("maildir").needs.store(store, "bob@org.example")) == store
    assert connectors.incoming("graph").needs.oauth_always
    assert not connectors.incoming("graph").needs.host
    assert not connectors.incoming("maildir").needs.host
    assert connectors.outgoing("graph").needs == connectors.incoming("graph").needs
    assert connectors.incoming("ews").needs.oauth == "renewing_token"
    assert not connectors.incoming("ews").needs.oauth_always


@given(st.text(max_size=20))
def test_an_unknown_protocol_is_a_clear_error(name):
    for direction, known, lookup in (("incoming", INCOMING_PROTOCOLS, connectors.incoming),
                                     ("outgoing", OUTGOING_PROTOCOLS, connectors.outgoing)):
        if name in known:
            assert lookup(name) is connectors.for_direction(name, direction)
            continue
        with pytest.raises(ConnectorError) as caught:
            connectors.for_direction(name, direction)
        assert caught.value.code == "unknown_protocol" and caught.value.severity == "auth"
        assert repr(name) in caught.value.message


def test_an_unknown_direction_is_refused():
    with pytest.raises(ValueError):
        connectors.for_direction("imap", "sideways")


# -- the declared capabilities against the real peers ------------------------------------------

def test_imap_does_what_it_declares(dovecot, mail_user):
    for n in (1, 2, 3):
        dovecot.deliver(mail_user, numbered(n))
    with connectors.incoming("imap")(imap_account(dovecot, mail_user)) as imap:
        exercise(imap, imap.folder_by_role("inbox"), 3)


def test_pop3_does_what_it_declares(dovecot, mail_user):
    for n in (1, 2, 3):
        dovecot.deliver(mail_user, numbered(n))
    with connectors.incoming("pop3")(pop3_account(dovecot, mail_user)) as pop:
        assert pop.headers_first  # Dovecot lists TOP
        (inbox,) = pop.list_folders()
        exercise(pop, inbox, 3)
    assert not hasattr(Pop3Connector, "set_keyword")  # no keywords: nothing to call


def test_maildir_does_what_it_declares(tmp_path):
    root = create_maildir(tmp_path / "bob", ["Sent"])
    for n in (1, 2, 3):
        deliver(root, "INBOX", numbered(n))
    with MaildirConnector(Account(address="bob@org.example", root=str(root))) as md:
        exercise(md, next(f for f in md.list_folders() if f.role == "inbox"), 3)


def test_ews_does_what_it_declares(exchange):  # noqa: F811 (the fixture)
    for n in (1, 2, 3):
        exchange.deliver(BOB, raw(mid=f"m{n}@customer.example", subject=f"Message {n}"))
    with connectors.incoming("ews")(ews_account(exchange)) as ews:
        exercise(ews, ews.folder_by_role("inbox"), 3)


# -- nothing guesses --------------------------------------------------------------------------

def _calls(path: Path, names: set[str]):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in names and node.args:
            yield node.lineno, ast.unparse(node.args[0])


def test_nothing_in_sync_probes_a_connector_or_sender():
    probes = [f"{path.relative_to(ROOT)}:{line}: {subject}"
              for path in SYNC.rglob("*.py")
              for line, subject in _calls(path, {"getattr", "hasattr"})
              if any(word in subject for word in ("conn", "sender", "store"))]
    assert probes == []
