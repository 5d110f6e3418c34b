"""Header-first sync (``server.sync.engine.batch.reads_headers_first``) against the real
Dovecot over IMAP and, where marked ``any_box``, against a Maildir tree too.

Where the tracking option is not "all email", the engine reads a folder's batches as header
sections and reads the whole of a message only when it is tracked, when its headers cannot
decide (no usable Message-ID, raw 8-bit header bytes, unreadable headers) or when a
wave that could not be written together is retried one message at a time. These tests check that what ends up in the CRM is what reading
every message whole gives, that the bodies of skipped mail are never fetched, and what
happens when a message vanishes or the connection drops between the two reads. The last
part compares ``parse(headers_only=True)`` with ``parse`` over the shared corpus.
"""
from __future__ import annotations

import re
import socket
from email import message_from_bytes

import pytest
from sqlalchemy import func, select

from server.crm.services import tracking
from server.db import db
from server.sync.engine.items import VANISHED
from server.sync.engine import run as engine
from server.sync.connectors import imap as imap_connector
from server.sync.connectors.imap import ImapConnector
from server.sync.connectors.maildir import MaildirConnector
from server.sync.engine.run import sync_mailbox
from server.sync.mail.bodies import REPORT_TYPES
from server.sync.mail.message import MessageError, parse
from server.sync.models import FolderState, Mailbox, MessageDecision, QuarantinedMessage
from server.sync.engine.content import identity_of
from tests.sync import world as w
from tests.sync.conftest import CORPUS

ORIGINAL = "orig1@org.example"  # the email Bob tracked earlier, which replies answer


@pytest.fixture
def crm(app, make_user):
    return w.build_crm(make_user)


def _box(crm, store):
    """Bob's mailbox reading ``store`` with the default tracking option, and the email he
    tracked."""
    box = w.store_mailbox(store, crm.bob)
    assert box.tracking_option == "crm_responses"
    w.track_earlier(crm, mid=ORIGINAL)
    return store, box


@pytest.fixture
def imap_box(crm, dovecot, mail_user):
    """Bob's IMAP mailbox with the default tracking option, and the email he tracked."""
    return _box(crm, w.ImapStore(dovecot, mail_user))


@pytest.fixture(params=["imap", "maildir"])
def any_box(crm, request, tmp_path):
    """``imap_box``, or the same over a Maildir tree (read header first from its files)."""
    return _box(crm, w.bob_store(request.param, request, tmp_path))


class Reads:
    """Records what the connector read: the refs whose whole message was read (IMAP: asked
    for as BODY.PEEK[]; Maildir: returned complete by ``fetch_changes``) or whose header
    section was, and the refs given to ``fetch_messages``."""

    def __init__(self, monkeypatch, store=None) -> None:
        self.whole_uids: list[int] = []
        self.header_uids: list[int] = []
        self.whole_refs: list[str] = []  # Maildir
        self.header_refs: list[str] = []
        self.fetch_messages: list[list[str]] = []
        maildir = store is not None and store.protocol == "maildir"
        cls = MaildirConnector if maildir else ImapConnector
        real_fetch, real_changes, real_messages = (imap_connector.uid_fetch, cls.fetch_changes,
                                                   cls.fetch_messages)
        reads = self

        def fetch(imap, uids, items):
            if "BODY.PEEK[]" in items.upper():
                reads.whole_uids.extend(uids)
            if "BODY.PEEK[HEADER]" in items.upper():
                reads.header_uids.extend(uids)
            return real_fetch(imap, uids, items)

        def fetch_changes(connector, *args, **kwargs):
            changes = real_changes(connector, *args, **kwargs)
            for message in changes.messages:
                (reads.whole_refs if message.complete else reads.header_refs).append(message.ref)
            return changes

        def fetch_messages(connector, folder, refs):
            reads.fetch_messages.append(list(refs))
            reads.whole_refs.extend(refs)
            return reads.before_whole(connector, folder, refs) or real_messages(
                connector, folder, refs)

        if maildir:
            monkeypatch.setattr(cls, "fetch_changes", fetch_changes)
        else:
            monkeypatch.setattr(imap_connector, "uid_fetch", fetch)
        monkeypatch.setattr(cls, "fetch_messages", fetch_messages)

    def before_whole(self, connector, folder, refs):
        """Hook for a test (runs before the real ``fetch_messages``); None to go on."""
        return None

    @property
    def asked_whole(self) -> set[str]:
        return {ref for refs in self.fetch_messages for ref in refs}

    @property
    def read_as_headers(self) -> set[str]:
        return {str(uid) for uid in self.header_uids} | set(self.header_refs)

    @property
    def read_whole(self) -> set[str]:
        return {str(uid) for uid in self.whole_uids} | set(self.whole_refs)


def _attached(prefix: str, subject: str, **headers) -> bytes:
    """A reply with a text and an HTML part, a non-ASCII body and a binary attachment."""
    extra = [("MIME-Version", "1.0"), ("Content-Type", 'multipart/mixed; boundary="mix"')]
    body = ("--mix\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n"
            "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe, the signed quote.\r\n"
            "--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            "<p>Gr\u00fc\u00dfe, the <b>signed</b> quote.</p>\r\n--alt--\r\n"
            "--mix\r\nContent-Type: application/pdf; name=\"quote.pdf\"\r\n"
            "Content-Disposition: attachment; filename=\"quote.pdf\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcOkw7zDtsOfCjEgMCBvYmoK\r\n--mix--\r\n")
    return w.raw(sender="Ann Customer <ann@customer.example>", subject=subject,
                 mid=f"{prefix}-att@customer.example", body=body, extra=extra,
                 Date="Tue, 05 Mar 2024 10:00:00 +0000", **headers)


def _mail_set(prefix: str) -> dict[str, bytes]:
    """Two replies to CRM-tracked mail and unrelated mail (one with a large attachment);
    ``prefix`` only changes the Message-IDs."""
    big = "QUJD" * 60_000  # 240 KB of base64: what header-first spares
    return {
        "reply-attached": _attached(prefix, "RE: Quote", In_Reply_To=f"<{ORIGINAL}>"),
        "reply-referenced": w.raw(sender="Stranger <stranger@else.example>",
                                  subject="RE: Quote (2)", mid=f"{prefix}-ref@else.example",
                                  References=f"<{ORIGINAL}>", Date="Wed, 06 Mar 2024 09:00:00 +0000",
                                  body="Answering below.\r\n"),
        "contact-large": w.raw(subject="Photos", mid=f"{prefix}-photos@customer.example",
                               extra=[("MIME-Version", "1.0"),
                                      ("Content-Type", "multipart/mixed; boundary=b")],
                               body=("--b\r\nContent-Type: text/plain\r\n\r\nPhotos.\r\n--b\r\n"
                                     "Content-Type: image/jpeg; name=a.jpg\r\n"
                                     "Content-Transfer-Encoding: base64\r\n\r\n"
                                     f"{big}\r\n--b--\r\n")),
        "unknown": w.raw(**w.OPTION_MAIL["unknown"], mid=f"{prefix}-unknown@else.example"),
        "newsletter": w.raw(**w.OPTION_MAIL["newsletter"], mid=f"{prefix}-news@customer.example"),
        "colleague": w.raw(**w.OPTION_MAIL["colleague"], mid=f"{prefix}-lunch@org.example"),
    }


REPLIES = {"reply-attached", "reply-referenced"}


def _mid(data: bytes) -> str:
    return identity_of(parse(data))


def _activity(email) -> dict:
    """What a tracked email holds, apart from its identity and arrival."""
    return dict(
        subject=email.subject, direction=email.direction, text_body=email.text_body,
        html_body=email.html_body, regarding=email.regarding_ref,
        parent=email.parent_activity_id, method=email.correlation_method,
        in_reply_to=email.in_reply_to, sender=email.sender_address, to=email.to_recipients,
        sent_on=email.sent_on,
        attachments=[(a.filename, a.content_type, a.size, a.sha256, a.is_inline,
                      a.content_omitted) for a in email.attachments],
        parties=sorted((p.role, p.address, p.name, p.party_ref) for p in email.parties))


def _skipped(box: Mailbox, identity: str) -> tuple:
    row = w.decision(box, identity)
    assert row is not None and not row.tracked
    assert row.subject and row.from_address and row.received_on is not None
    return row.subject, row.from_address, row.reason, row.rule_hits


def _deliver(store, mail: dict[str, bytes]) -> dict[str, str]:
    return {name: store.deliver(data) for name, data in mail.items()}


def _decisions(box: Mailbox) -> int:
    return db.session.scalar(select(func.count()).select_from(MessageDecision).where(
        MessageDecision.mailbox_id == box.id))


# --------------------------------------------------------------------------- 1. replies

def test_header_first_tracks_the_replies_as_reading_everything_whole_does(crm, any_box,
                                                                          monkeypatch):
    store, box = any_box
    # The whole-message path first (the engine told not to read header first)...
    whole_mail = _mail_set("whole")
    _deliver(store, whole_mail)
    with monkeypatch.context() as patch:
        patch.setattr(engine, "reads_headers_first", lambda ctx, info: False)
        reads = Reads(patch, store)
        first = sync_mailbox(box.id)
    assert first.status == "success" and first.tracked == 2
    assert not reads.fetch_messages and not reads.read_as_headers  # every message read whole
    # ...then the same mail (other Message-IDs) header first.
    mail = _mail_set("hf")
    uids = _deliver(store, mail)
    reads = Reads(monkeypatch, store)
    result = sync_mailbox(box.id)
    assert result.status == "success"
    # (The first sync's two replies do not come again: its cursor moved past the category
    # it wrote, a STORE over IMAP, a file's rename on Maildir.)
    assert (result.fetched, result.tracked, result.skipped, result.seen) == (6, 2, 4, 0)
    assert set(uids.values()) <= reads.read_as_headers
    # Only tracked mail was read whole, in one request: the new replies; the bodies of the
    # skipped mail were never read.
    (asked,) = reads.fetch_messages
    assert set(asked) == {uids[n] for n in REPLIES}
    assert {uids[n] for n in mail if n not in REPLIES}.isdisjoint(reads.read_whole)
    for name, data in mail.items():
        twin = whole_mail[name]
        if name in REPLIES:
            (email,) = w.tracked(_mid(data))
            (whole,) = w.tracked(_mid(twin))
            assert _activity(email) == _activity(whole)
            assert w.decision(box, _mid(data)).tracked
        else:
            assert w.tracked(_mid(data)) == []
            assert _skipped(box, _mid(data)) == _skipped(box, _mid(twin))
    (email,) = w.tracked(_mid(mail["reply-attached"]))
    assert "Grüße" in email.text_body and "<b>signed</b>" in email.html_body
    (attachment,) = email.attachments
    assert attachment.filename == "quote.pdf" and attachment.size == 27
    assert email.regarding_ref == ("opportunity", crm.opp.id)


# --------------------------------------------------------------------------- 2. read whole

UNREADABLE = b"X-Spool: 7\r\nX-Queue: deferred\r\n\r\nBODY-MARKER: not an email at all\r\n"


def _undecidable() -> dict[str, bytes]:
    """Mail whose headers cannot decide, and one plain message whose headers can."""
    no_mid_reply = w.raw(subject="RE: Quote", In_Reply_To=f"<{ORIGINAL}>",
                         body="No Message-ID here.\r\n")
    no_mid_other = w.raw(sender="someone@else.example", subject="Hi", body="Nor here.\r\n")
    return {
        "no-mid-reply": no_mid_reply.replace(b"Message-ID: <", b"X-Was-Message-ID: <"),
        "no-mid-other": no_mid_other.replace(b"Message-ID: <", b"X-Was-Message-ID: <"),
        "8bit-reply": w.raw(subject="RE: Quote \u2013 Gr\u00fc\u00dfe", mid="eight@customer.example",
                            In_Reply_To=f"<{ORIGINAL}>"),  # raw UTF-8 in the Subject
        "8bit-other": w.raw(sender="Jos\u00e9 Ni\u00f1o <jose@else.example>",
                            subject="Caf\u00e9", mid="cafe@else.example").replace(
            "Jos\u00e9 Ni\u00f1o".encode(), "Jos\u00e9 Ni\u00f1o".encode("latin-1")),
        "unreadable": UNREADABLE,
        "decidable": w.raw(sender="someone@else.example", subject="Plain", mid="plain@else.example"),
    }


def test_mail_whose_headers_cannot_decide_is_read_whole_before_it_is_decided(any_box,
                                                                              monkeypatch):
    store, box = any_box
    mail = _undecidable()
    assert not header_section(mail["8bit-reply"]).isascii()
    assert not header_section(mail["8bit-other"]).isascii()
    with pytest.raises(MessageError):
        parse(UNREADABLE)
    uids = _deliver(store, mail)
    reads = Reads(monkeypatch, store)
    result = sync_mailbox(box.id)
    assert result.status == "success", result.reason
    assert (result.tracked, result.quarantined) == (2, 1)
    assert reads.asked_whole == {uids[n] for n in mail if n != "decidable"}
    # Identities, subjects and senders are those of the whole message.
    for name in ("no-mid-reply", "8bit-reply"):
        whole = parse(mail[name])
        (email,) = w.tracked(identity_of(whole))
        assert email.subject == whole.subject and email.text_body == whole.text_body
    assert identity_of(parse(mail["no-mid-reply"])).startswith("sha256:")
    assert w.tracked(identity_of(parse(mail["8bit-reply"])))[0].subject == "RE: Quote – Grüße"
    for name in ("no-mid-other", "8bit-other", "decidable"):
        whole = parse(mail[name])
        row = w.decision(box, identity_of(whole))
        assert row is not None and not row.tracked
        assert row.subject == whole.subject and row.from_address == whole.from_.address
    assert w.decision(box, "cafe@else.example").subject == "Café"
    quarantined = db.session.scalar(select(QuarantinedMessage))
    assert quarantined.source_ref == uids["unreadable"] and quarantined.raw == UNREADABLE
    assert quarantined.error_code == "not-an-email"
    assert sync_mailbox(box.id).tracked == 0 and w.count_emails() == 3  # original + 2


# --------------------------------------------------------------------------- 3. vanished

def _expunge(dovecot, mail_user, uid: str) -> None:
    """Expunge one message of the Inbox from a second connection, as another client does."""
    client = dovecot.imap_client(mail_user)
    try:
        client.select_folder("INBOX")
        client.delete_messages([int(uid)])
        client.expunge()
    finally:
        client.logout()


def _remove(store, ref: str) -> None:
    """Remove one message of the Inbox as another client does (IMAP: expunged; Maildir: its
    file deleted)."""
    if store.protocol == "maildir":
        (file,) = [f for sub in ("new", "cur") for f in (store.root / sub).glob(f"{ref}*")]
        file.unlink()
    else:
        _expunge(store.server, store.user, ref)


def test_a_message_expunged_before_it_is_read_whole_is_skipped_and_the_sync_goes_on(
        any_box, monkeypatch):
    store, box = any_box
    mail = _mail_set("gone")
    uids = _deliver(store, mail)
    doomed = uids["reply-attached"]
    reads = Reads(monkeypatch, store)

    def expunge_first(connector, folder, refs):
        assert doomed in refs
        _remove(store, doomed)

    reads.before_whole = expunge_first
    result = sync_mailbox(box.id)
    assert result.status == "success"
    assert (result.fetched, result.tracked, result.skipped) == (6, 1, 5)
    gone = _mid(mail["reply-attached"])
    assert w.tracked(gone) == []
    row = w.decision(box, gone)
    assert not row.tracked and row.reason == VANISHED
    assert row.subject == "RE: Quote" and row.from_address == "ann@customer.example"
    assert len(w.tracked(_mid(mail["reply-referenced"]))) == 1
    reads.before_whole = lambda *args: None
    again = sync_mailbox(box.id)
    assert again.status == "success" and again.tracked == 0
    assert w.tracked(gone) == [] and len(w.tracked(_mid(mail["reply-referenced"]))) == 1
    assert w.count_emails() == 2  # the original and the reply that stayed


def test_a_message_without_message_id_expunged_before_it_is_read_whole(imap_box, dovecot,
                                                                       mail_user, monkeypatch):
    store, box = imap_box
    mail = _undecidable()
    uids = _deliver(store, {n: mail[n] for n in ("no-mid-reply", "8bit-reply")})
    reads = Reads(monkeypatch)

    def expunge_first(connector, folder, refs):
        assert uids["no-mid-reply"] in refs
        _expunge(dovecot, mail_user, uids["no-mid-reply"])

    reads.before_whole = expunge_first
    result = sync_mailbox(box.id)
    assert result.status == "success", result.reason
    assert (result.tracked, result.skipped) == (1, 1)
    assert w.count_emails() == 2 and len(w.tracked("eight@customer.example")) == 1
    # Its decision row says so, under a hash of the header section it had (no identity).
    (row,) = db.session.scalars(select(MessageDecision).where(
        MessageDecision.mailbox_id == box.id, MessageDecision.reason == VANISHED)).all()
    assert row.identity.startswith("headers-sha256:") and not row.tracked
    assert row.subject == "RE: Quote" and row.from_address == "ann@customer.example"


@pytest.mark.parametrize("name", ["8bit-reply", "8bit-other"])
def test_a_message_with_8bit_headers_expunged_before_it_is_read_whole_gets_its_decision(
        imap_box, dovecot, mail_user, monkeypatch, name):
    store, box = imap_box
    mail = _undecidable()
    uids = _deliver(store, {n: mail[n] for n in (name, "decidable")})
    reads = Reads(monkeypatch)

    def expunge_first(connector, folder, refs):
        assert refs == [uids[name]]  # raw 8-bit headers: read whole before deciding
        _expunge(dovecot, mail_user, uids[name])

    reads.before_whole = expunge_first
    result = sync_mailbox(box.id)
    assert result.status == "success", result.reason
    assert result.fetched == 2 and result.tracked == 0
    row = w.decision(box, _mid(mail[name]))
    assert row is not None and not row.tracked and row.reason == VANISHED
    assert row.folder_name == "INBOX" and row.subject and row.from_address
    assert w.decision(box, _mid(mail["decidable"])) is not None


# --------------------------------------------------------------------------- one by one

def test_a_wave_retried_one_by_one_reads_its_messages_whole(
        any_box, monkeypatch):
    store, box = any_box
    mail = _mail_set("fallback")
    uids = _deliver(store, mail)

    bulk = tracking.track_emails

    def refused(actor, tracks, **kwargs):
        if len(tracks) > 1:  # a wave's bulk write; one email at a time goes through
            raise RuntimeError("the bulk write failed")
        return bulk(actor, tracks, **kwargs)

    monkeypatch.setattr(tracking, "track_emails", refused)  # every wave goes one by one
    reads = Reads(monkeypatch, store)
    result = sync_mailbox(box.id)
    assert result.status == "success"
    assert (result.tracked, result.quarantined, result.skipped) == (2, 0, 4)
    assert reads.asked_whole == set(uids.values())  # the retry reads the wave whole
    (email,) = w.tracked(_mid(mail["reply-attached"]))
    assert "Grüße" in email.text_body and [a.filename for a in email.attachments] == ["quote.pdf"]
    assert w.tracked(_mid(mail["reply-referenced"]))[0].text_body.strip() == "Answering below."
    for name in ("contact-large", "unknown", "newsletter", "colleague"):
        assert _skipped(box, _mid(mail[name]))


# --------------------------------------------------------------------------- 4. dropped

def test_the_connection_dropping_while_reading_whole_fails_the_run_without_half_writes(
        imap_box, monkeypatch):
    store, box = imap_box
    first, second = _mail_set("one"), _mail_set("two")
    _deliver(store, first)
    _deliver(store, second)
    reads = Reads(monkeypatch)
    calls = []

    def drop_on_second(connector, folder, refs):
        calls.append(refs)
        if len(calls) == 2:  # the second batch: the server goes away under the connector
            connector.client.socket().shutdown(socket.SHUT_RDWR)

    reads.before_whole = drop_on_second
    failed = sync_mailbox(box.id, limit=6)
    assert failed.status == "failure" and failed.error_code == "connection_lost"
    db.session.expire_all()
    mailbox = db.session.get(Mailbox, box.id)
    assert mailbox.consecutive_failures == 1 and mailbox.incoming_status == "failure"
    # The first batch was committed whole; nothing of the second was written.
    assert w.count_emails() == 1 + 2
    assert _decisions(box) == 6
    assert all(w.decision(box, _mid(data)) is None for data in second.values())
    state = db.session.scalar(select(FolderState).where(FolderState.mailbox_id == box.id,
                                                        FolderState.folder_name == "INBOX"))
    assert state is not None
    reads.before_whole = lambda *args: None
    again = sync_mailbox(box.id, limit=6)
    assert again.status == "success" and again.tracked == 2
    for data in [*first.values(), *second.values()]:
        assert w.decision(box, _mid(data)) is not None
    for mail in (first, second):
        for name in REPLIES:
            assert len(w.tracked(_mid(mail[name]))) == 1
    assert w.count_emails() == 1 + 4
    assert db.session.get(Mailbox, box.id).consecutive_failures == 0


# --------------------------------------------------------------------------- 5. corpus

HEADER_FIELDS = ("message_id", "in_reply_to", "references", "subject", "from_", "sender",
                 "reply_to", "to", "cc", "bcc", "date", "date_raw", "thread_index", "headers")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
CORPUS_FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file()) if CORPUS.is_dir() else []


def header_section(raw: bytes) -> bytes:
    """The header section as IMAP's BODY[HEADER] gives it: up to the first blank line."""
    end = _BLANK_LINE.search(raw)
    return raw[:end.end()] if end else raw


def test_the_corpus_is_there():
    assert len(CORPUS_FILES) > 50, f"the shared mail corpus is missing or small: {CORPUS}"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_headers_only_parse_gives_what_the_whole_message_gives(path):
    raw = path.read_bytes()
    try:
        whole = parse(raw)
    except MessageError:
        with pytest.raises(MessageError):  # not an email whole: not one as headers either
            parse(header_section(raw), headers_only=True)
        return
    head = parse(header_section(raw), headers_only=True)
    assert whole.complete and not head.complete
    assert head.text_body == head.html_body == "" and head.attachments == []
    with pytest.raises(MessageError):
        head.content_hash  # noqa: B018 - the property raises
    if header_section(raw).isascii() and whole.message_id:
        for name in HEADER_FIELDS:
            assert getattr(head, name) == getattr(whole, name), name
        assert identity_of(head) == identity_of(whole)
    content_type = message_from_bytes(raw).get_content_type()
    if content_type == "multipart/report" or content_type in REPORT_TYPES:
        assert head.is_delivery_report == whole.is_delivery_report


def test_headers_only_parse_of_mail_without_message_id_has_no_identity_yet(app):  # identity_of looks
    # up the earlier content hash in the database
    raw = w.raw(subject="No id").replace(b"Message-ID: <", b"X-Was-Message-ID: <")
    head = parse(header_section(raw), headers_only=True)
    assert head.message_id is None and head.subject == "No id"
    with pytest.raises(MessageError):
        identity_of(head)  # its identity is a hash of the body: the batch reads it whole
    assert identity_of(parse(raw)).startswith("sha256:")
