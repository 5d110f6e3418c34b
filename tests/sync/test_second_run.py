"""The second run over an unchanged mailbox reads nothing whole (issue 12, point 3), for
the default tracking option (header first) and for "all" (every message whole on the first
run). IMAP: Dovecot's bytes are counted by a proxy between the engine and the server
(``tests/servers/counting_proxy.py``). Maildir: the bytes read from the tree's message
files are counted where every read opens them (``Path.open``), and the whole messages the
connector returned or was asked for."""
from __future__ import annotations

from pathlib import Path

import pytest

from server.db import db
from server.sync.connectors.maildir import MaildirConnector
from server.sync.connectors.maildir_headers import CHUNK
from server.sync.engine.run import sync_mailbox
from tests.servers.counting_proxy import CountingProxy
from tests.sync.connectors.conftest import count_reads
from tests.sync import world as w


class ProxiedStore(w.ImapStore):
    """A Dovecot user read over IMAP through a counting proxy."""

    def __init__(self, server, user, proxy: CountingProxy):
        super().__init__(server, user)
        self.proxy = proxy

    def profile_fields(self) -> dict:
        return {**super().profile_fields(), "incoming_host": self.proxy.host,
                "incoming_port": self.proxy.port}


@pytest.mark.parametrize("option", ["crm_responses", "all"])
def test_the_second_run_over_an_unchanged_mailbox_reads_nothing_whole(crm, dovecot, mail_user,
                                                                       option):
    with CountingProxy(dovecot.host, dovecot.imap_port) as proxy:
        store = ProxiedStore(dovecot, mail_user, proxy)
        box = w.store_mailbox(store, crm.bob, tracking_option=option)
        w.track_earlier(crm, mid="original@org.example")
        for n in range(6):  # replies to CRM mail: tracked under either option
            store.deliver(w.raw(mid=f"second-{n}@customer.example", subject=f"RE: Quote {n}",
                                In_Reply_To="<original@org.example>"))
        first = sync_mailbox(box.id)
        assert first.status == "success" and first.tracked == 6
        read = proxy.reset()
        assert read.whole_messages == 6 and read.whole_bytes > 0  # the proxy sees them
        db.session.expire_all()
        second = sync_mailbox(box.id)
        assert second.status == "success" and second.tracked == 0
        again = proxy.reset()
    assert (again.whole_messages, again.whole_bytes) == (0, 0)


class MaildirReads:
    """What syncs read from a Maildir tree: the bytes read from each message file
    (``count_reads``) and the whole messages the connector returned (complete ones from
    ``fetch_changes``) or was asked for (``fetch_messages``)."""

    def __init__(self, monkeypatch, root: Path) -> None:
        self.root = root
        self.files = count_reads(monkeypatch, lambda path: path.parent.name in ("cur", "new")
                                 and path.is_relative_to(root))
        self.complete = self.asked_whole = 0
        real_changes, real_messages = (MaildirConnector.fetch_changes,
                                       MaildirConnector.fetch_messages)
        reads = self

        def fetch_changes(connector, *args, **kwargs):
            changes = real_changes(connector, *args, **kwargs)
            reads.complete += sum(m.complete for m in changes.messages)
            return changes

        def fetch_messages(connector, folder, refs):
            reads.asked_whole += len(refs)
            return real_messages(connector, folder, refs)

        monkeypatch.setattr(MaildirConnector, "fetch_changes", fetch_changes)
        monkeypatch.setattr(MaildirConnector, "fetch_messages", fetch_messages)

    def reset(self) -> tuple[int, int, int, int]:
        """(messages returned whole, asked whole, files read to their end, bytes read) since
        the last reset; a file is known by its unique name, whatever flags it has since."""
        sizes = {p.name.split(":")[0]: p.stat().st_size
                 for sub in ("cur", "new") for p in (self.root / sub).iterdir()}
        to_end = sum(1 for path, count in self.files.items()
                     if count >= sizes[path.name.split(":")[0]])
        counts = (self.complete, self.asked_whole, to_end, sum(self.files.values()))
        self.files.clear()
        self.complete = self.asked_whole = 0
        return counts


@pytest.mark.parametrize("option", ["crm_responses", "all"])
def test_the_second_run_over_an_unchanged_maildir_reads_no_file_whole(crm, tmp_path, monkeypatch,
                                                                      option):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option=option)
    w.track_earlier(crm, mid="original@org.example")
    body = "The signed quote, with all its terms.\r\n" * 500  # 20 KB: what a whole read costs
    for n in range(6):  # replies to CRM mail: tracked under either option
        store.deliver(w.raw(mid=f"second-{n}@customer.example", subject=f"RE: Quote {n}",
                            In_Reply_To="<original@org.example>", body=body))
    reads = MaildirReads(monkeypatch, store.root)
    first = sync_mailbox(box.id)
    assert first.status == "success" and first.tracked == 6
    complete, asked, to_end, read = reads.reset()
    assert complete + asked == 6 and to_end == 6 and read > 6 * len(body)  # (the counts work)
    assert len(list((store.root / "cur").glob("*:2,a"))) == 6  # the keyword, written after
    db.session.expire_all()                                   # the run's cursor was taken
    # ... and the cursor moved past it (``past_own_writes``): nothing comes back.
    second = sync_mailbox(box.id)
    assert second.status == "success" and (second.tracked, second.seen, second.fetched) == (0, 0, 0)
    assert reads.reset() == (0, 0, 0, 0)


def test_a_keyword_another_client_sets_meanwhile_is_read_again(crm, tmp_path, monkeypatch):
    """Between the run's read and its category, a client sets another keyword on a message:
    that message's letters are not the run's own, so the next run reads its header section
    again (a category set in Outlook may make it tracked); the others stay read."""
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob)
    w.track_earlier(crm, mid="original@org.example")
    for n in range(3):
        store.deliver(w.raw(mid=f"reply-{n}@customer.example", subject=f"RE: Quote {n}",
                            In_Reply_To="<original@org.example>"))
    real = MaildirConnector.set_keywords

    def meanwhile(self, folder, refs, keyword):
        other = MaildirConnector(self.account)  # another client, a moment before
        real(other, folder, refs[:1], "Red category")
        return real(self, folder, refs, keyword)

    monkeypatch.setattr(MaildirConnector, "set_keywords", meanwhile)
    assert sync_mailbox(box.id).tracked == 3
    monkeypatch.setattr(MaildirConnector, "set_keywords", real)
    db.session.expire_all()
    reads = MaildirReads(monkeypatch, store.root)
    second = sync_mailbox(box.id)
    assert second.status == "success" and (second.tracked, second.seen) == (0, 1)
    complete, asked, _, read = reads.reset()
    assert (complete, asked) == (0, 0) and 0 < read <= CHUNK  # one header section
