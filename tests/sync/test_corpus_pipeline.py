"""Every message of the shared corpus (../shared/corpus/mail-fixtures, read in place) goes
through the engine without an exception: tracked with sensible fields, or quarantined
(never for an internal error) with a reason. Once message by message, once as a whole
mailbox synced from a Maildir, on SQLite and PostgreSQL (which refuses NUL characters and
overlong values that SQLite would take)."""
from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from server.crm.activities import Email
from server.db import db
from server.sync.engine.run import sync_mailbox
from server.sync.mail.message import MessageError, parse
from server.sync.models import MessageDecision, QuarantinedMessage
from server.sync.engine.batch import process
from server.sync.engine.content import identity_of
from server.sync.engine.context import MailboxRun
from tests.sync import world as w
from tests.sync.conftest import CORPUS

pytestmark = pytest.mark.both_databases


def corpus_files():
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md")


@pytest.fixture
def crm(app, make_user):
    if not CORPUS.is_dir():
        pytest.fail(f"the shared mail corpus is missing: {CORPUS}")
    return w.build_crm(make_user)


def test_every_corpus_message_is_tracked_or_quarantined_with_a_reason(crm):
    box = w.mailbox(crm.bob, tracking_option="all")
    db.session.commit()
    ctx = MailboxRun.load(box)
    files = corpus_files()
    assert len(files) >= 100
    outcomes = {}
    for path in files:
        data = path.read_bytes()
        outcome = process(ctx, w.INBOX, w.fetched(data, ref=path.name))
        db.session.commit()
        outcomes[path] = outcome
        assert outcome.status in ("tracked", "skipped", "quarantined"), path
        assert outcome.reason and outcome.reason.strip(), path
        if outcome.status == "quarantined":
            row = db.session.get(QuarantinedMessage, outcome.quarantine_id)
            assert row.error_code != "internal", f"{path}: {row.reason}"
            with pytest.raises(MessageError):  # only what the parser refuses is quarantined
                parse(data)
            continue
        msg = parse(data)
        assert outcome.identity == identity_of(msg)
        row = w.decision(box, outcome.identity)
        assert row is not None and row.tracked == outcome.tracked
        if outcome.new or not outcome.tracked:  # a repeat keeps the first reason
            assert row.reason == outcome.reason
        if outcome.tracked:
            email = db.session.get(Email, outcome.activity_id)
            assert email.message_id == outcome.identity
            if not outcome.created:  # the corpus repeats some Message-IDs: one activity
                continue
            assert email.subject == (msg.subject.replace("\x00", "") or "")[:400]
            sender = msg.from_ or msg.sender
            if sender:
                assert email.parties[0].role == "from" and email.parties[0].address == sender.address
            assert len(email.attachments) == len(msg.attachments)
        else:  # option "all": only bounces, lists, auto-replies and sender-less mail are left
            assert row.rule_hits[-1]["rule"] in ("delivery-report", "bulk-mail", "auto-reply",
                                                 "no-sender", "already-tracked", "loop"), path
    tracked = [o for o in outcomes.values() if o.tracked]
    assert len(tracked) > len(files) // 2  # the corpus is mostly ordinary mail


def test_the_corpus_as_one_mailbox_syncs_from_a_maildir(crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    files = corpus_files()
    for path in files:
        store.deliver(path.read_bytes())
    result = sync_mailbox(box.id, limit=40)
    assert result.status == "success", result.reason
    assert result.fetched >= len(files)
    internal = db.session.scalar(select(func.count()).select_from(QuarantinedMessage).where(
        QuarantinedMessage.error_code == "internal"))
    assert internal == 0
    # Every message has its "why (not) tracked" answer, under its identity.
    expected = set()
    for path in files:
        data = path.read_bytes()
        try:
            expected.add(identity_of(parse(data)))
        except MessageError:
            expected.add(f"sha256:{hashlib.sha256(data).hexdigest()}")
    assert set(db.session.scalars(select(MessageDecision.identity))) == expected
    # A second run finds nothing new and duplicates nothing.
    emails = db.session.scalar(select(func.count()).select_from(Email))
    again = sync_mailbox(box.id, limit=40)
    assert again.status == "success" and again.tracked == 0
    assert db.session.scalar(select(func.count()).select_from(Email)) == emails
