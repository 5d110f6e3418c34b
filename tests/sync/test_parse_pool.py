"""The parse pool (``server.sync.engine.pool``): messages parsed and their HTML sanitized in
other processes give what parsing in-process gives, bytes that are no email come back with
their reason, a batch large enough goes through the pool in a sync and its HTML is stored
sanitized, and a pool whose worker was killed is replaced while the batch is parsed
in-process. Its size is the app's ``REGARDING_SYNC_PARSE_PROCESSES`` setting, from the
environment like every other one, or the cores."""
from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest
from sqlalchemy import select

from server.crm.html import sanitize_html
from server.db import db
from server.sync.engine import pool
from server.sync.engine.run import sync_mailbox
from server.sync.mail.message import parse
from server.sync.models import QuarantinedMessage
from tests.sync import world as w
from tests.sync.conftest import CORPUS

NOT_EMAIL = b"\x00\x01\x02 this is no email at all \x00"
FILED = dict(extra=[("MIME-Version", "1.0"), ("Content-Type", "multipart/mixed; boundary=p")],
             body=("--p\r\nContent-Type: text/plain\r\n\r\nSee file {n}.\r\n--p\r\nContent-Type: "
                   "application/pdf; name=order{n}.pdf\r\n\r\nPDF of order {n}\r\n--p--\r\n"))
HTML = dict(extra=[("MIME-Version", "1.0"), ("Content-Type", "text/html; charset=utf-8")],
            body='<p onclick="steal()">Order {n}</p><script>alert(1)</script>'
                 '<img src="https://tracker.example/{n}.gif">\r\n')


@pytest.fixture
def pooled(app):
    """A pool of two processes whatever this machine has."""
    app.config["REGARDING_SYNC_PARSE_PROCESSES"] = 2


def test_the_pool_size_is_an_app_setting_read_from_the_environment(monkeypatch, tmp_path):
    from server import create_app
    from tests.conftest import make_config
    for env, wanted in (("0", 0), ("3", 3), ("", len(os.sched_getaffinity(0)))):
        monkeypatch.setenv("REGARDING_SYNC_PARSE_PROCESSES", env)
        app = create_app(make_config(f"sqlite:///{tmp_path / 'size.db'}", tmp_path))
        assert app.config.get("REGARDING_SYNC_PARSE_PROCESSES") == (int(env) if env else None)
        with app.app_context():
            assert pool.processes() == wanted
    monkeypatch.delenv("REGARDING_SYNC_PARSE_PROCESSES")
    app = create_app(make_config(f"sqlite:///{tmp_path / 'size.db'}", tmp_path))
    with app.app_context():
        assert pool.processes() == len(os.sched_getaffinity(0))  # unset: the cores
        app.config["REGARDING_SYNC_PARSE_PROCESSES"] = 0
        assert pool.start([(b"From: a@x.example\r\n\r\nx", False)] * pool.MIN_POOLED).futures \
            is None, "0: parsed in-process"


def test_the_corpus_parses_in_the_pool_as_it_does_in_process(pooled):
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md")
    assert len(files) >= pool.MIN_POOLED
    jobs = [(path.read_bytes(), False) for path in files] + [(NOT_EMAIL, False)]
    results = pool.start(jobs).results()
    assert pool.worker_pids(), "the batch went to the pool"
    assert len(results) == len(jobs)
    for (raw, _), there in zip(jobs, results):
        here = pool.prepare(raw, False)
        if here.msg is None:
            assert there.msg is None
            assert (there.error.code, there.error.reason) == (here.error.code, here.error.reason)
            continue
        assert there.msg == here.msg  # every field but the raw bytes, which are the engine's
        assert there.msg.content_hash == here.msg.content_hash
        assert there.safe_html == (sanitize_html(here.msg.html_body) if here.msg.html_body
                                   else None)
        assert there.digests == tuple(hashlib.sha256(a.content).hexdigest()
                                      for a in here.msg.attachments)
    assert results[-1].error.code == "no-headers"


@pytest.mark.parametrize("processes", [2, 0])
def test_a_batch_through_the_pool_or_in_process_stores_the_same(app, make_user, tmp_path,
                                                                 processes):
    app.config["REGARDING_SYNC_PARSE_PROCESSES"] = processes
    pool.shutdown()
    crm = w.build_crm(make_user)
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    count = pool.MIN_POOLED + 6
    for n in range(count):
        shape = FILED if n % 5 == 0 else HTML  # an attachment in every fifth
        html = {key: value.format(n=n) if key == "body" else value for key, value in shape.items()}
        store.deliver(NOT_EMAIL if n == 7 else w.raw(sender=f"person{n}@else.example",
                                                     mid=f"pool{n}@x.example",
                                                     subject=f"Order {n}", **html))
    result = sync_mailbox(box.id, limit=50)
    assert result.status == "success", result.reason
    assert (result.fetched, result.tracked, result.quarantined) == (count, count - 1, 1)
    row = db.session.scalar(select(QuarantinedMessage))
    assert row.error_code == "no-headers" and "not an email" in row.reason
    assert row.raw == NOT_EMAIL
    emails = w.emails()
    assert len(emails) == count - 1
    for email in emails:
        n = int(email.message_id.removeprefix("pool").split("@")[0])
        if n % 5 == 0:
            [attachment] = email.attachments
            assert attachment.sha256 == hashlib.sha256(f"PDF of order {n}".encode()).hexdigest()
            continue
        assert "script" not in email.html_body and "onclick" not in email.html_body
        assert 'data-remote-src="https://tracker.example/' in email.html_body
        assert email.html_body == sanitize_html(HTML["body"].format(n=n))
    assert bool(pool.worker_pids()) == (processes == 2)


def test_a_pool_whose_worker_was_killed_is_replaced_and_the_batch_parsed_in_process(pooled):
    jobs = [(w.raw(mid=f"kill{n}@x.example", subject=f"Kill {n}"), False)
            for n in range(pool.MIN_POOLED)]
    assert [r.msg.message_id for r in pool.start(jobs).results()] == \
        [f"kill{n}@x.example" for n in range(pool.MIN_POOLED)]
    before = pool.worker_pids()
    os.kill(before[0], signal.SIGKILL)
    expected = [f"kill{n}@x.example" for n in range(pool.MIN_POOLED)]
    for _ in range(50):  # until the pool notices (at once, or at the next batch)
        assert [r.msg.message_id for r in pool.start(jobs).results()] == expected
        if pool.worker_pids() and not set(pool.worker_pids()) & set(before):
            break
        time.sleep(0.1)
    assert pool.worker_pids() and not set(pool.worker_pids()) & set(before), \
        "a new pool replaced the broken one"


def test_a_small_batch_is_parsed_in_process_and_left_to_tracking_to_sanitize(pooled):
    data = w.raw(mid="small@x.example", **{k: v.format(n=1) if k == "body" else v
                                            for k, v in HTML.items()})
    parsing = pool.start([(data, False)])
    assert parsing.futures is None
    done = parsing.results()[0]
    assert done.msg == parse(data) and done.safe_html is None


@pytest.mark.parametrize("processes", [2, 0])
def test_batches_read_ahead_over_imap_are_parsed_with_the_apps_pool_size(
        app, make_user, dovecot, mail_user, processes):
    """IMAP reads the next batch (and starts its parse) in a thread without the app context:
    the size it parses with is the app's all the same."""
    app.config["REGARDING_SYNC_PARSE_PROCESSES"] = processes
    pool.shutdown()
    crm = w.build_crm(make_user)
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    count = 3 * pool.MIN_POOLED  # three batches: two of them read ahead
    for n in range(count):
        store.deliver(w.raw(sender=f"person{n}@else.example", mid=f"ahead{n}@x.example",
                            subject=f"Order {n}"))
    result = sync_mailbox(box.id, limit=pool.MIN_POOLED)
    assert result.status == "success", result.reason
    assert (result.fetched, result.tracked) == (count, count)
    assert sorted(e.message_id for e in w.emails()) == sorted(f"ahead{n}@x.example"
                                                              for n in range(count))
    assert bool(pool.worker_pids()) == (processes == 2)
