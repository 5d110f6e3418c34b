"""A key stored by one side is found by the others: an email tracked from a Message-ID as
one client writes it is found by the sync engine (its identity, the In-Reply-To of a reply)
and by the add-in (its status) from the forms others write; a contact's address as a form
stores it is found from the address a mail header carries and the pane sends. Generated
by hypothesis from ``tests/test_mailkeys.py``'s strategies, against the database."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from server.crm.services import records, tracked, tracking
from server.crm.registry import RECORD_TYPES
from server.crm.services.resolution import resolve
from server.db import db
from server.security import authz
from server.sync.mail.correlation import IN_REPLY_TO, correlation_keys
from server.sync.mail.message import parse
from tests.sync.conftest import build_raw
from tests.test_mailkeys import addresses, message_ids

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(stored=message_ids(), asked=message_ids())
def test_a_tracked_message_id_is_found_by_sync_and_by_the_add_in(app, make_user, stored, asked):
    key, written = stored
    user = _user(make_user)
    p = authz.principal(user)
    email, _ = tracking.track_email(p, tracking.EmailContent(
        message_id=written, subject="Quote", from_=("Carol", "carol@fabrikam.test"),
        to=[("", user.email)], text_body="Hello"))
    db.session.commit()
    assert email.message_id == key
    # The sync engine: the same email in a mailbox (its header decorated as another client
    # would), and a reply to it.
    header = _rewritten(written, asked[1])
    msg = parse(build_raw(headers={"Message-ID": header}))
    assert tracked.find_email(msg.identity).id == email.id
    reply = parse(build_raw(headers={"Message-ID": "<reply@customer.test>"},
                            extra=[("In-Reply-To", header)]))
    assert (IN_REPLY_TO, email.message_id) in correlation_keys(reply)
    # The add-in: the pane asks with the header as Outlook gives it.
    assert tracked.tracking_status(p, header).status == "tracked"


@SETTINGS
@given(case=addresses(), other=addresses())
def test_a_contact_address_is_found_from_headers_and_the_pane(app, make_user, case, other):
    key, spec, written = case
    user = _user(make_user)
    p = authz.principal(user)
    contact = records.create(p, RECORD_TYPES["contact"], {"last_name": "Carol", "email1": written})
    db.session.commit()
    msg = parse(build_raw(headers={"From": f"Carol <{spec}>"}))
    pane_form = other[2].replace(other[1], spec)  # the pane's way of writing this address
    found = resolve([msg.from_.address, pane_form])
    assert all(("contact", contact.id) in {(m.record_type, m.record_id) for m in matches}
               for matches in found.values()), (key, found)


_users: dict[int, object] = {}


def _user(make_user):
    """One user per test run (``make_user`` commits a new one each call)."""
    if id(make_user) not in _users:
        _users.clear()
        _users[id(make_user)] = make_user()
    return _users[id(make_user)]


def _rewritten(written: str, other_form: str) -> str:
    """``written``'s id in the decoration of another generated form (blanks, comment)."""
    inner = written[written.index("<") + 1:written.index(">")]
    return other_form[:other_form.index("<") + 1] + inner + other_form[other_form.index(">"):]
