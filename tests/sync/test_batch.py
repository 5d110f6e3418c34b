"""Batches through the engine (``server.sync.engine.batch``): written in bulk, one poison message
never loses the others, the category written with one STORE per batch, replies inside a
batch still find their parent, and latency counted from when mail became visible."""
from __future__ import annotations

from datetime import timedelta

import pytest
from imapclient import IMAPClient
from sqlalchemy import event, func, inspect, select, text
from sqlalchemy.engine.interfaces import ExecuteStyle

from server.crm.activities import Email
from server.crm.services import tracking
from server.crm.services.tracked import TrackRequest
from server import db as server_db
from server.db import db, utcnow
from server.security import authz
from server.sync.engine.run import sync_mailbox
from server.sync.models import MessageDecision, QuarantinedMessage
from tests.sync import world as w
from tests.waiting import until


@pytest.fixture
def crm(app, make_user):
    return w.build_crm(make_user)


def _sent_during(run) -> tuple:
    """What ``run()`` returns, and the statements it sent (one-line, as the server got them)."""
    sent: list[str] = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        sent.append(" ".join(statement.split()))
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        return run(), sent
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)


@pytest.mark.both_databases
def test_a_batch_is_written_in_bulk(crm, tmp_path):
    """Every INSERT of the batch is a few statements whatever its rows; on PostgreSQL none
    goes to the driver's executemany, which has the server parse and run the INSERT once
    per row, no statement has placeholders for psycopg to rewrite ($1 as the server takes
    them), and a long body is compressed with LZ4 rather than pglz (bench/README.md, issue 17
    goal 2)."""
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    long_body = "Order lines, delivery dates and prices as agreed.\r\n" * 600  # 30 KB
    for n in range(20):
        store.deliver(w.raw(sender=f"person{n}@else.example", mid=f"bulk{n}@x.example",
                            subject=f"Order {n}", Cc="Ann Customer <ann@customer.example>",
                            body=long_body if n == 0 else "Hello there.\r\n"))
    inserts: dict[str, int] = {}
    one_by_one: list[str] = []
    rewritten: list[str] = []  # placeholders psycopg would rewrite on the client

    def count(conn, cursor, statement, parameters, context, executemany):
        if "%(" in statement or "%s" in statement:
            rewritten.append(statement[:60])
        words = statement.split()
        if words[0].upper() not in ("INSERT", "COPY"):
            return
        table = words[2 if words[0].upper() == "INSERT" else 1].strip('"')
        inserts[table] = inserts.get(table, 0) + 1
        if context is not None and context.execute_style is ExecuteStyle.EXECUTEMANY \
                and len(parameters) > 1:
            one_by_one.append(table)
    engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        result = sync_mailbox(box.id, limit=50)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert result.tracked == 20 and w.count_emails() == 20
    # 20 activities, 20 emails, 60 parties (from, to, cc), 20 decision rows: a few
    # multi-row INSERTs each, not a statement a row.
    for table in ("activity", "email", "activity_party", "message_decision"):
        assert 1 <= inserts[table] <= 3, (table, inserts[table])
    if engine.dialect.name == "postgresql":
        assert one_by_one == [] and rewritten == []
        assert db.session.execute(text(
            "SELECT pg_column_compression(text_body) FROM email WHERE message_id = :m"),
            {"m": "bulk0@x.example"}).scalar() == "lz4"
    ann = [p for e in w.emails() for p in e.parties if p.address == "ann@customer.example"]
    assert len(ann) == 20 and all(p.party_ref == ("contact", crm.ann.id) for p in ann)


@pytest.mark.both_databases
def test_a_batch_commits_without_waiting_for_the_disk(crm, tmp_path):
    """On PostgreSQL each batch's transaction (activities, decisions, cursor) turns
    ``synchronous_commit`` off for itself alone before its COMMIT (``db.commit_unflushed``,
    what SQLite's ``synchronous=NORMAL`` does for every transaction); the next transaction
    has the server's setting again. SQLite is sent nothing of the kind."""
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(5):
        store.deliver(w.raw(sender=f"person{n}@else.example", mid=f"unflushed{n}@x.example",
                            subject=f"Order {n}"))
    said: list[str] = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        if "synchronous_commit" in statement:
            said.append(statement)
    engine = db.engine
    server_setting = db.session.execute(text("SHOW synchronous_commit")).scalar() \
        if engine.dialect.name == "postgresql" else None
    db.session.rollback()
    event.listen(engine, "before_cursor_execute", listen)
    try:
        result = sync_mailbox(box.id, limit=2)  # three batches
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert result.tracked == 5 and w.count_emails() == 5
    if engine.dialect.name == "postgresql":
        assert said == ["SET LOCAL synchronous_commit TO off"] * 3
        assert db.session.execute(text("SHOW synchronous_commit")).scalar() == server_setting
    else:
        assert said == []


def _analyses() -> dict[str, int]:
    return dict(db.session.execute(text(
        "SELECT relname, analyze_count FROM pg_stat_user_tables WHERE relname IN "
        "('activity', 'email', 'activity_party', 'message_decision', 'attachment')")).all())


def _unanalyzed_changes(table: str) -> int:
    return db.session.execute(text("SELECT pg_stat_get_mod_since_analyze(CAST(:t AS regclass))"),
                              {"t": table}).scalar()


@pytest.mark.both_databases
def test_a_table_grown_past_its_statistics_is_analyzed_after_the_batch(crm, tmp_path,
                                                                        monkeypatch):
    """On PostgreSQL a batch ends (before its commit) with an ``ANALYZE`` of each table the
    sync grows whose rows changed more since its last analysis than it held then (at least
    ``STATISTICS_FLOOR``, here 5), so the next batches' lookups are planned for the rows
    there are (``db.refresh_statistics``); a table that has not grown so far is left alone,
    as are the tables the sync does not grow. SQLite is sent no ANALYZE."""
    monkeypatch.setattr(server_db, "STATISTICS_FLOOR", 5)
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    analyzed: list[str] = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("ANALYZE"):
            analyzed.append(statement)
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("ANALYZE activity, email, activity_party, "
                                    "message_decision, attachment"))
            db.session.commit()
            analyzed.clear()
            before = _analyses()
        for n in range(8):
            store.deliver(w.raw(sender=f"person{n}@else.example", mid=f"grow{n}@x.example"))
        assert sync_mailbox(box.id, limit=8).tracked == 8
        if db.engine.dialect.name != "postgresql":
            assert analyzed == []
            return
        # The server counts a session's changes when it has been idle for a moment (at most
        # once a second): the next batch's check sees these.
        until(lambda: _unanalyzed_changes("message_decision") >= 8 or
              _analyses()["message_decision"] > before["message_decision"],
              "the server's count of the batch's rows", session=db.session)
        store.deliver(w.raw(sender="late@else.example", mid="grow-late@x.example"))
        assert sync_mailbox(box.id, limit=8).tracked == 1
        after = _analyses()
        for table in ("activity", "email", "activity_party", "message_decision"):
            assert after[table] > before[table], (table, analyzed)
        assert after["attachment"] == before["attachment"]
        assert all("SKIP_LOCKED" in s for s in analyzed), analyzed
        # The rows since are fewer than the floor: the next batch analyzes nothing.
        analyzed.clear()
        store.deliver(w.raw(sender="later@else.example", mid="grow-later@x.example"))
        assert sync_mailbox(box.id, limit=8).tracked == 1
        assert analyzed == []
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)


@pytest.mark.both_databases
def test_a_failed_analysis_leaves_the_batch_whole(crm, tmp_path, monkeypatch, caplog):
    """Fault injection: the server refuses the ANALYZE (as a statement timeout would); the
    batch's mail, decisions and cursor are committed all the same and a warning names the
    tables, not the error's text."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the sync analyzes on PostgreSQL only")
    monkeypatch.setattr(server_db, "STATISTICS_FLOOR", 0)
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(3):
        store.deliver(w.raw(sender=f"person{n}@else.example", mid=f"refused{n}@x.example"))

    def refuse(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("ANALYZE"):
            statement = "ANALYZE no_such_table_here"
        return statement, parameters
    event.listen(db.engine, "before_cursor_execute", refuse, retval=True)
    try:
        with caplog.at_level("WARNING", logger="server.db"):
            assert sync_mailbox(box.id, limit=10).tracked == 3
    finally:
        event.remove(db.engine, "before_cursor_execute", refuse)
    assert w.count_emails() == 3
    assert db.session.scalar(select(func.count()).select_from(MessageDecision)) == 3
    assert any("ANALYZE of" in r.getMessage() and "failed" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


@pytest.mark.both_databases
def test_a_table_that_doubled_its_pages_is_analyzed_in_the_same_batch(crm, tmp_path,
                                                                       monkeypatch):
    """The server's count of changed rows lags (each session's changes are counted at most
    once a second), and a first sync's batches come faster: within that second, a decision
    lookup planned for an empty table read the whole table at each wave. The tables' size
    on disk does not lag: a table past twice the pages it had when last analyzed (and past
    ``STATISTICS_PAGES``) is analyzed by the batch that grew it."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the sync analyzes on PostgreSQL only")
    monkeypatch.setattr(server_db, "STATISTICS_FLOOR", 10 ** 9)  # the counts never say so
    monkeypatch.setattr(server_db, "STATISTICS_PAGES", 0)
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    db.session.execute(text("ANALYZE activity, email, activity_party, message_decision, "
                            "attachment"))  # empty: 0 pages each
    db.session.commit()
    analyzed: list[str] = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("ANALYZE"):
            analyzed.extend(t.strip(' "') for t in statement.split(")", 1)[1].split(","))
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        for n in range(8):
            store.deliver(w.raw(sender=f"person{n}@else.example", mid=f"pages{n}@x.example"))
        assert sync_mailbox(box.id, limit=8).tracked == 8
        assert sorted(analyzed) == ["activity", "activity_party", "email", "message_decision"]
        analyzed.clear()  # one page each now: one more message doubles none of them
        store.deliver(w.raw(sender="late@else.example", mid="pages-late@x.example"))
        assert sync_mailbox(box.id, limit=8).tracked == 1
        assert analyzed == []
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)


POISON = dict(extra=[("MIME-Version", "1.0"), ("Content-Type", "multipart/mixed; boundary=p")],
              body=("--p\r\nContent-Type: text/plain\r\n\r\nSee file.\r\n--p\r\nContent-Type: "
                    "application/octet-stream; name=poison.bin\r\n\r\nPOISON\r\n--p--\r\n"))


def refuse_poison(monkeypatch) -> None:
    """Fault injection: the attachment store refuses the attachment of ``POISON`` mail."""
    real = tracking._stored

    def stored(digest, content):
        if content == b"POISON":
            raise RuntimeError("the attachment store refused it")
        return real(digest, content)

    monkeypatch.setattr(tracking, "_stored", stored)


def test_one_poison_message_is_quarantined_and_the_rest_of_its_batch_tracked(crm, tmp_path,
                                                                              monkeypatch):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(5):
        poison = POISON if n == 2 else {}  # an attachment the store refuses
        store.deliver(w.raw(mid=f"b{n}@x.example", subject=f"Batch {n}", **poison))
    refuse_poison(monkeypatch)
    row = _one_of_five_quarantined(box, "b", 2, "RuntimeError")
    assert b"POISON" in row.raw


def _one_of_five_quarantined(box, prefix: str, bad: int, why: str) -> QuarantinedMessage:
    """Sync the five messages ``{prefix}0@x.example``...: message ``bad`` quarantined with
    ``why`` in its reason, the four others tracked, each with its decision row."""
    result = sync_mailbox(box.id, limit=10)
    good = [n for n in range(5) if n != bad]
    assert result.status == "success"
    assert (result.fetched, result.tracked, result.quarantined) == (5, 4, 1)
    assert sorted(e.message_id for e in w.emails()) == [f"{prefix}{n}@x.example" for n in good]
    row = db.session.scalar(select(QuarantinedMessage))
    assert row.error_code == "internal" and why in row.reason
    assert not w.decision(box, f"{prefix}{bad}@x.example").tracked
    assert all(w.decision(box, f"{prefix}{n}@x.example").tracked for n in good)
    assert db.session.scalar(select(func.count()).select_from(MessageDecision)) == 5
    return row


@pytest.mark.both_databases
def test_an_email_the_database_refuses_fails_its_wave_alone(crm, tmp_path, monkeypatch):
    """Fault injection: one email of a wave breaks a constraint of ``activity`` (no owner).
    On PostgreSQL the wave's emails go by COPY (``bulk.insert_objects``): its error is an
    ``IntegrityError`` raised inside the wave's savepoint, so the batch runs the wave's
    messages one at a time as for any refused write: that message quarantined, the rest
    tracked, no email or decision row of the failed attempt left behind."""
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(5):
        store.deliver(w.raw(sender=f"person{n}@else.example", mid=f"r{n}@x.example",
                            subject=f"Refused {n}" if n == 3 else f"Order {n}"))
    real = tracking._new_email

    def new_email(*args, **kwargs):
        email = real(*args, **kwargs)
        if email.subject == "Refused 3":
            email.owner_user_id = None  # breaks the check "one owner"
        return email

    monkeypatch.setattr(tracking, "_new_email", new_email)
    _one_of_five_quarantined(box, "r", 3, "one_owner")


@pytest.mark.both_databases
def test_the_tracked_emails_a_wave_looks_up_come_without_their_bodies(crm, tmp_path):
    """Correlation reads a tracked parent's keys and links, not its bodies: they are left
    out of the wave's lookups (``correlate.WITHOUT_BODIES``), and the reply is linked."""
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    parent = w.track_earlier(crm, mid="root@org.example", html_body="<p>Our quote.</p>" * 500)
    parent_id, box_id = parent.id, box.id
    db.session.expunge_all()
    store.deliver(w.raw(mid="reply@x.example", subject="RE: Quote",
                        In_Reply_To="<root@org.example>"))
    loaded: dict[int, set[str]] = {}

    def on_load(email, _context):
        loaded.setdefault(email.id, set(inspect(email).dict))
    event.listen(Email, "load", on_load)
    try:
        result = sync_mailbox(box_id, limit=10)
    finally:
        event.remove(Email, "load", on_load)
    assert result.tracked == 1
    assert parent_id in loaded and "conversation_id" in loaded[parent_id]
    assert not loaded[parent_id] & {"html_body", "text_body", "description"}
    reply = db.session.scalar(select(Email).where(Email.message_id == "reply@x.example"))
    assert reply.parent_activity_id == parent_id
    assert db.session.get(Email, parent_id).html_body.startswith("<p>Our quote.</p>")


def test_replies_and_copies_inside_one_batch_see_what_came_before(crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    w.track_earlier(crm, mid="root@org.example", regarding=("opportunity", crm.opp.id))
    db.session.commit()
    store.deliver(w.raw(mid="a@x.example", subject="RE: Quote", In_Reply_To="<root@org.example>"))
    store.deliver(w.raw(mid="b@x.example", subject="RE: RE: Quote", In_Reply_To="<a@x.example>"))
    store.deliver(w.raw(mid="c@x.example", subject="RE: RE: RE: Quote",
                        References="<root@org.example> <a@x.example> <b@x.example>"))
    store.deliver(w.raw(mid="a@x.example", subject="RE: Quote", In_Reply_To="<root@org.example>"))
    result = sync_mailbox(box.id, limit=10)
    assert result.fetched == 4 and w.count_emails() == 4  # root + a, b, c: the copy is one
    by_id = {e.message_id: e for e in w.emails()}
    assert by_id["b@x.example"].parent_activity_id == by_id["a@x.example"].id
    assert by_id["c@x.example"].parent_activity_id == by_id["b@x.example"].id
    assert all(by_id[m].regarding_ref == ("opportunity", crm.opp.id)
               for m in ("a@x.example", "b@x.example", "c@x.example"))
    assert w.decision(box, "a@x.example").correlation_method == "in_reply_to"


@pytest.mark.both_databases
def test_a_wave_reads_the_track_requests_once_and_tracking_is_answered_from_them(crm, tmp_path):
    """The open track requests (pending, untracked; any user's) naming a wave's messages by
    Message-ID or tracking token are read in one statement per wave
    (``tracked.open_requests``): correlation, the owner's requests and ``track_emails``
    (untracked marks, completing requests) are all answered from it. Bob's request by
    Message-ID, Carol's by token (tracked from Bob's mailbox) and Bob's Untrack all still
    do what they say, in the first wave and in the one after it."""
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    by_id = tracking.request_tracking(crm.p, "<asked@x.example>", subject="Proposal",
                                      regarding=("opportunity", crm.opp.id))
    by_token = tracking.request_tracking(authz.principal(crm.carol), "<draft@org.example>",
                                         subject="Offer", regarding=("account", crm.acc.id))
    w.track_earlier(crm, mid="gone@x.example")
    tracking.untrack(crm.p, "gone@x.example", delete_copy=True)
    db.session.commit()
    by_id_id, by_token_id, token = by_id.id, by_token.id, by_token.tracking_token
    store.deliver(w.raw(mid="asked@x.example", subject="Proposal"))
    store.deliver(w.raw(mid="answer@x.example", subject=f"RE: Offer {token}"))
    store.deliver(w.raw(mid="gone@x.example", subject="Quote"))
    store.deliver(w.raw(mid="plain@x.example", subject="Hello"))
    store.deliver(w.raw(mid="reply@x.example", subject="RE: Proposal",
                        In_Reply_To="<asked@x.example>"))  # waits for the first wave
    result, sent = _sent_during(lambda: sync_mailbox(box.id, limit=50))
    reads = [said for said in sent if said.startswith("SELECT") and "FROM track_request" in said]
    waves = [said for said in sent if said.startswith("SAVEPOINT")]
    assert result.fetched == 5 and result.tracked == 4
    assert len(waves) == 2 and len(reads) == 2
    by_mid = {e.message_id: e for e in w.emails()}
    assert set(by_mid) == {"asked@x.example", "answer@x.example", "plain@x.example",
                           "reply@x.example"}
    asked, answer = by_mid["asked@x.example"], by_mid["answer@x.example"]
    assert asked.regarding_ref == ("opportunity", crm.opp.id)
    assert answer.regarding_ref == ("account", crm.acc.id)
    assert by_mid["reply@x.example"].parent_activity_id == asked.id
    done = {r.id: r for r in db.session.scalars(select(TrackRequest))}
    assert (done[by_id_id].status, done[by_id_id].activity_id) == ("done", asked.id)
    assert (done[by_token_id].status, done[by_token_id].activity_id) == ("done", answer.id)
    assert w.decision(box, "gone@x.example").rule_hits[-1]["rule"] == "untracked-by-user"
    assert any(r.status == "untracked" and r.internet_message_id == "gone@x.example"
               for r in done.values())


@pytest.mark.both_databases
def test_a_batch_commit_keeps_the_runs_own_rows_and_forgets_what_it_read(crm, tmp_path):
    """After a batch commits, the run's mailbox, organization, owner and folder cursor stay
    loaded (read once for the whole run, not again after every batch: ``_commit_batch``),
    while what the batch read is read again: a parent whose regarding another session
    changed between two batches gives the next batch's reply the new one."""
    from sqlalchemy import update
    from server.crm.activities import Activity
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    root = w.track_earlier(crm, mid="root@org.example", regarding=("opportunity", crm.opp.id))
    root_id, account_id = root.id, crm.acc.id
    store.deliver(w.raw(mid="a@x.example", subject="RE: Quote", In_Reply_To="<root@org.example>"))
    store.deliver(w.raw(mid="x@x.example", subject="Hello"))
    store.deliver(w.raw(mid="b@x.example", subject="RE: Quote", In_Reply_To="<root@org.example>"))
    store.deliver(w.raw(mid="y@x.example", subject="Hello again"))
    def relinked_elsewhere(progress):
        if progress.batch and progress.processed == 2:  # after the first batch
            with db.engine.begin() as other:  # another session's change
                other.execute(update(Activity).where(Activity.id == root_id).values(
                    **Activity.regarding_values("account", account_id)))
    result, sent = _sent_during(lambda: sync_mailbox(box.id, limit=2,
                                                     progress=relinked_elsewhere))
    loads = [table for said in sent for table in ("mailbox", "organization", "user",
                                                   "folder_state")
             if said.startswith((f"SELECT {table}.id", f'SELECT "{table}".id'))
             or (table == "mailbox" and "FROM mailbox LEFT OUTER JOIN organization" in said)]
    assert result.fetched == 4 and result.tracked == 4
    assert loads.count("mailbox") == 1 and loads.count("organization") <= 1
    assert loads.count("user") <= 1 and loads.count("folder_state") == 1
    by_id = {e.message_id: e for e in w.emails()}
    assert by_id["a@x.example"].regarding_ref == ("opportunity", crm.opp.id)
    assert by_id["b@x.example"].regarding_ref == ("account", account_id)
    assert by_id["b@x.example"].parent_activity_id == root_id


def test_the_category_is_written_with_one_store_per_batch(crm, dovecot, mail_user, monkeypatch):
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(7):
        store.deliver(w.raw(mid=f"k{n}@x.example", subject=f"Keyword {n}"))
    stores = []
    real = IMAPClient._command_and_check

    def command(self, name, *args, **kwargs):
        if name == "store":
            stores.append(args[0])
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(IMAPClient, "_command_and_check", command)
    result = sync_mailbox(box.id, limit=4)
    assert result.tracked == 7
    assert [len(uids.split(b",")) for uids in stores] == [4, 3]  # one UID STORE per batch
    assert all("Tracked to Regarding" in keywords for keywords in store.keywords("INBOX"))
    # The cursor moved past the run's own STOREs: the next run reads nothing and stores
    # nothing.
    again = sync_mailbox(box.id, limit=4)
    assert again.fetched == again.tracked == 0 and len(stores) == 2


def test_latency_of_mail_filed_into_a_tracked_folder_days_after_it_arrived(crm, dovecot,
                                                                           mail_user):
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    store.create_folder("INBOX/Contoso deal")
    keys = w.folder_keys(box)
    w.folder_rule(box, keys["INBOX/Contoso deal"], "INBOX/Contoso deal", ("opportunity", crm.opp.id))
    db.session.commit()
    days_ago = utcnow() - timedelta(days=3)
    early = w.raw(mid="early@x.example", subject="Filed late")
    uid = dovecot.deliver(mail_user, early, msg_time=days_ago)
    # Mail already in the tracked folder at its first visit is a backlog, not latency.
    dovecot.deliver(mail_user, w.raw(mid="backlog@x.example"), "INBOX/Contoso deal",
                    msg_time=days_ago)
    before_first = utcnow()
    sync_mailbox(box.id)
    assert w.decision(box, "backlog@x.example").latency_ms is None
    store.move(str(uid), "INBOX", "INBOX/Contoso deal")
    assert sync_mailbox(box.id).tracked == 1
    after_second = utcnow()
    row = db.session.scalar(select(MessageDecision).where(
        MessageDecision.mailbox_id == box.id, MessageDecision.identity == "early@x.example"))
    assert row.tracked and row.received_on < before_first - timedelta(days=2)
    # Counted from the folder's previous visit, not from its arrival three days ago.
    assert row.latency_ms is not None
    assert row.latency_ms <= (after_second - before_first).total_seconds() * 1000


# --------------------------------------------------------------------------- per-message features

@pytest.mark.both_databases
def test_a_queue_mailbox_batch_queues_each_email_once_with_one_lookup_per_wave(
        crm, make_user, tmp_path):
    from server.crm.activities import ActivityParty
    from server.crm.queues import QueueItem
    queue, team = w.support_queue(make_user)
    store = w.MaildirStore(tmp_path / "store", "support@org.example")
    box = w.store_mailbox(store, queue=queue, tracking_option="all")
    for n in range(6):
        store.deliver(w.raw(sender=f"c{n}@else.example", to="support@org.example",
                            mid=f"q{n}@x.example", subject=f"Help {n}"))
    result, sent = _sent_during(lambda: sync_mailbox(box.id, limit=50))
    lookups = [said for said in sent if said.startswith("SELECT") and "FROM queue_item" in said]
    assert result.tracked == 6 and len(lookups) == 1  # one wave, one lookup
    emails = w.emails()
    assert all(e.owner_team_id == team.id for e in emails)
    items = db.session.scalars(select(QueueItem)).all()
    assert sorted(i.activity_id for i in items) == sorted(e.id for e in emails)
    assert all(i.queue_id == queue.id for i in items)
    parties = db.session.scalars(select(ActivityParty).where(
        ActivityParty.queue_id == queue.id)).all()
    assert sorted(p.activity_id for p in parties) == sorted(e.id for e in emails)
    store.deliver(w.raw(sender="c0@else.example", to="support@org.example", mid="q0@x.example",
                        subject="Help 0"))  # a second copy: the same email, no second item
    assert sync_mailbox(box.id, limit=50).status == "success"
    assert len(db.session.scalars(select(QueueItem)).all()) == 6


@pytest.mark.both_databases
def test_smart_matching_finds_an_earlier_message_of_the_same_batch(crm, tmp_path):
    w.org().smart_matching = True
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    store.deliver(w.raw(sender="ann@customer.example", to="bob@org.example",
                        subject="Delivery dates", mid="first@x.example"))
    store.deliver(w.raw(sender="ann@customer.example", to="bob@org.example",
                        subject="RE: Delivery dates", mid="second@x.example"))
    assert sync_mailbox(box.id, limit=50).tracked == 2
    first, second = w.tracked("first@x.example")[0], w.tracked("second@x.example")[0]
    assert (second.parent_activity_id, second.correlation_method) == (first.id, "smart_match")


@pytest.mark.both_databases
def test_two_activities_between_users_in_a_batch(crm, tmp_path):
    w.org().track_between_users_as_two = True
    db.session.commit()
    internal = w.raw(sender="Bob Seller <bob@org.example>", to="carol@org.example",
                     mid="internal@org.example", subject="Our plan")
    w.put(w.mailbox(crm.bob, tracking_option="all"), internal, folder=w.SENT)
    store = w.MaildirStore(tmp_path / "store", "carol@org.example")
    box = w.store_mailbox(store, crm.carol, tracking_option="all")
    store.deliver(internal)
    store.deliver(w.raw(mid="other@x.example"))
    assert sync_mailbox(box.id, limit=50).tracked == 2
    copies = w.tracked("internal@org.example")
    assert {(e.owner_user_id, e.direction) for e in copies} == {(crm.bob.id, "outgoing"),
                                                                 (crm.carol.id, "incoming")}


@pytest.mark.both_databases
def test_a_refusal_in_a_wave_is_worded_for_its_message_and_the_others_are_tracked(
        crm, tmp_path, monkeypatch):
    from server.errors import Forbidden
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for name in ("a", "refused", "b"):
        store.deliver(w.raw(mid=f"{name}@x.example", subject=name))
    real = tracking.track_emails

    def refusing(p, tracks, **kw):  # fault injection: the store refuses one message
        if any(t.content.message_id == "refused@x.example" for t in tracks):
            raise Forbidden("You may not track this one.")
        return real(p, tracks, **kw)

    monkeypatch.setattr(tracking, "track_emails", refusing)
    result = sync_mailbox(box.id, limit=10)
    assert (result.tracked, result.skipped, result.quarantined) == (2, 1, 0)
    row = w.decision(box, "refused@x.example")
    assert not row.tracked and row.reason.endswith(
        "But it could not be tracked: You may not track this one.")
    assert sorted(e.message_id for e in w.emails()) == ["a@x.example", "b@x.example"]


# --------------------------------------------------------------------------- forward mailbox

def _forward_of(sender: str, original: bytes, mid: str) -> bytes:
    body = (b"--f\r\nContent-Type: text/plain\r\n\r\nFYI\r\n--f\r\nContent-Type: message/rfc822"
            b"\r\n\r\n" + original + b"\r\n--f--\r\n")
    return w.raw(sender=sender, to="forward@org.example", subject="Fw: see below", mid=mid,
                 body=body, extra=[("MIME-Version", "1.0"),
                                   ("Content-Type", 'multipart/mixed; boundary="f"')])


@pytest.mark.both_databases
def test_a_forward_mailbox_batch_tracks_for_each_user_and_quarantines_a_poison_forward_there(
        crm, tmp_path, monkeypatch):
    from server.sync.engine.run import retry_quarantined
    from server.sync.models import Mailbox
    bob_box = w.mailbox(crm.bob, incoming_method="forward_mailbox", tracking_option="all")
    carol_box = w.mailbox(crm.carol, incoming_method="forward_mailbox", tracking_option="all")
    store = w.MaildirStore(tmp_path / "store", "forward@org.example")
    prof = w.profile("maildir", **store.profile_fields())
    forward_box = Mailbox(name="Forward", email_address="forward@org.example",
                          is_forward_mailbox=True, server_profile_id=prof.id, enabled=True,
                          email_approved=True, owning_business_unit_id=crm.bob.business_unit_id)
    db.session.add(forward_box)
    db.session.commit()
    poison = w.raw(mid="poison@customer.example", subject="Poison", **POISON)
    poison_forward = _forward_of("Bob Seller <bob@org.example>", poison, "fwd-poison@org.example")
    store.deliver(_forward_of("Bob Seller <bob@org.example>",
                              w.raw(mid="for-bob@customer.example"), "fwd-bob@org.example"))
    store.deliver(poison_forward)
    store.deliver(_forward_of("Carol Colleague <carol@org.example>",
                              w.raw(mid="for-carol@customer.example"), "fwd-carol@org.example"))
    store.deliver(_forward_of("eve@else.example", w.raw(mid="for-eve@customer.example"),
                              "fwd-eve@else.example"))
    real = tracking._stored
    refuse_poison(monkeypatch)
    result = sync_mailbox(forward_box.id, limit=10)
    assert (result.fetched, result.tracked, result.skipped, result.quarantined) == (4, 2, 1, 1)
    assert w.tracked("for-bob@customer.example")[0].owner_user_id == crm.bob.id
    assert w.tracked("for-carol@customer.example")[0].owner_user_id == crm.carol.id
    assert w.tracked("poison@customer.example") == [] and w.tracked("for-eve@customer.example") == []
    assert w.decision(bob_box, "for-bob@customer.example").tracked
    assert w.decision(carol_box, "for-carol@customer.example").tracked
    assert w.decision(forward_box, "fwd-bob@org.example").reason.startswith("Forwarded by Bob")
    assert "not a Regarding user" in w.decision(forward_box, "fwd-eve@else.example").reason
    row = db.session.scalar(select(QuarantinedMessage))
    assert (row.mailbox_id, row.error_code, row.raw) == (forward_box.id, "internal", poison_forward)
    assert "quarantined" in w.decision(forward_box, "fwd-poison@org.example").reason
    assert w.decision(bob_box, "poison@customer.example") is None
    monkeypatch.setattr(tracking, "_stored", real)  # fixed: the retry tracks it for Bob
    outcome = retry_quarantined(row.id)
    db.session.commit()
    assert outcome.tracked and db.session.get(QuarantinedMessage, row.id).resolved
    assert w.tracked("poison@customer.example")[0].owner_user_id == crm.bob.id
