"""A probe never hides what a read would find (``Probes.unchanged``), generated: a mailbox
is read to its end (a run, which may write its category on what it read and move its
cursor past that write, ``past_own_writes``, while another client changes something
between the read and the write), then another client does a few things, then a new
session probes each folder against its cursor and reads it for real (the listing's and
the stamp's shortcuts left out). Whenever the probe says "unchanged", the read finds
nothing: no message, no removal, no reset. And when nothing at all happened after the run,
the probe says "unchanged" (else every idle visit would be a run), but on Maildir after
the run's own renames (its directories' times must settle first). A category another
client sets between the run's read and its write stays on the message (the run's write
does not replace it), and on a message the run did not tag it is still news after the run
(on a message the run tracked and tagged it may be taken as read: nothing more to do).

Against the real stores: Dovecot over IMAP (with CONDSTORE and QRESYNC, and as most servers
are, ``PLAIN_IMAP``) and POP3, and a Maildir tree; and the fakes of Microsoft Graph and EWS
(``tests/fakes``), where another client's actions are the fake's own (as Outlook's)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.sync.connectors.base import Account, BatchKeywords, Probes
from server.sync.connectors.common import keyword_to_category
from server.sync.connectors.ews import EwsConnector
from server.sync.connectors.graph import GraphConnector
from server.sync.connectors.imap import ImapConnector
from server.sync.connectors.maildir import (MaildirConnector, create_maildir, deliver,
                                            folder_path)
from server.sync.connectors.maildir_tree import split_stamp
from server.sync.connectors.pop3 import Pop3Connector
from tests.servers.dovecot import PLAIN_IMAP
from tests.sync.connectors.conftest import TRACKED, imap_account, numbered
from tests.sync.connectors.test_pop3 import pop3_account
from tests.sync.ews.conftest import ews_account, exchange  # noqa: F401 (a fixture)
from tests.sync.graph.conftest import graph  # noqa: F401 (a fixture)

FOLDERS = ("INBOX", "Projects")  # the Inbox first: another client's actions happen there


class DovecotUser:
    """A fresh Dovecot user, read over IMAP or POP3; another client's actions over IMAP."""

    def __init__(self, server, protocol: str, sees_categories: bool):
        self.server, self.protocol = server, protocol
        # whether a read from a cursor finds a category set later (IMAP with CONDSTORE)
        self.sees_categories = sees_categories
        self.user = server.add_user(f"probe-{uuid.uuid4().hex[:12]}@example.com", "secret")
        server.create_mailbox(self.user, "Projects")
        self.folders = FOLDERS if protocol == "imap" else ("INBOX",)

    def connector(self):
        if self.protocol == "imap":
            return ImapConnector(imap_account(self.server, self.user))
        return Pop3Connector(pop3_account(self.server, self.user))

    def deliver(self, folder: str, n: int) -> None:
        self.server.deliver(self.user, numbered(n), folder)

    def other_client(self, action: str, category: str) -> str | None:
        """Does ``action`` to the Inbox's first message; returns its ref."""
        client = self.server.imap_client(self.user)
        try:
            client.select_folder("INBOX")
            uids = client.search(["ALL"])[:1]
            if not uids:
                return None
            if action == "keyword":
                client.add_flags(uids, [category.replace(" ", "_").encode()])
            elif action == "seen":
                client.add_flags(uids, [b"\\Seen"])
            elif action == "expunge":
                client.delete_messages(uids)
                client.expunge()
            elif action == "move":
                client.move(uids, "Projects")
        finally:
            client.logout()
        return str(uids[0])

    def categories(self, ref: str) -> set[str]:
        client = self.server.imap_client(self.user)
        try:
            client.select_folder("INBOX", readonly=True)
            flags = client.get_flags([int(ref)]).get(int(ref), ())
        finally:
            client.logout()
        return {keyword_to_category(f.decode()) for f in flags if not f.startswith(b"\\")}

    def settle(self) -> None:
        pass

    def close(self) -> None:
        pass  # (a user left behind costs nothing)


class MaildirTree:
    """A Maildir tree in a scratch directory; another client's actions on its files."""

    protocol = "maildir"
    folders = FOLDERS
    sees_categories = True

    def __init__(self):
        self.scratch = Path(tempfile.mkdtemp(prefix="regarding-probe-"))
        self.root = create_maildir(self.scratch / "tree", ["Projects"])
        self.account = Account(address="bob@org.example", root=str(self.root))

    def connector(self):
        return MaildirConnector(self.account)

    def deliver(self, folder: str, n: int) -> None:
        deliver(self.root, folder, numbered(n))

    def _first(self) -> Path | None:
        files = sorted(p for sub in ("new", "cur") for p in (self.root / sub).iterdir())
        return files[0] if files else None

    def other_client(self, action: str, category: str) -> str | None:
        """Does ``action`` to the Inbox's first message; returns its ref."""
        file = self._first()
        if file is None:
            return None
        ref, _, flags = file.name.partition(":2,")
        if action == "keyword":
            with MaildirConnector(self.account) as other:
                inbox = next(f for f in other.list_folders() if f.name == "INBOX")
                other.set_keywords(inbox, [ref], category)
        elif action == "seen":
            os.rename(file, self.root / "cur" / f"{ref}:2,{''.join(sorted(set(flags + 'S')))}")
        elif action == "expunge":
            file.unlink()
        elif action == "move":
            os.rename(file, folder_path(self.root, "Projects") / "cur" / f"{ref}:2,{flags}")
        return ref

    def categories(self, ref: str) -> set[str]:
        with MaildirConnector(self.account) as md:
            names = md._keyword_names(self.root)
            return set(md._keywords(md._files(self.root)[ref], names))

    def settle(self) -> None:
        """Time passes: the directories' times are older than a stamp needs (the test does
        this only before a read, never between a read and a probe)."""
        then = time.time() - 10
        for folder in self.folders:
            for sub in ("new", "cur"):
                os.utime(folder_path(self.root, folder) / sub, (then, then))

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


class GraphMailbox:
    """A fresh mailbox of the Graph fake; another client's actions are Outlook's."""

    protocol = "graph"
    folders = ("Inbox", "Inbox/Projects")
    sees_categories = True

    def __init__(self, fake):
        self.fake, self.address = fake, f"probe-{uuid.uuid4().hex[:12]}@org.example"
        fake.add_mailbox(self.address)
        fake.create_folder(self.address, "Inbox/Projects")
        token = fake._token("app", fake.app_roles)["access_token"]
        self.account = Account(address=self.address, settings=fake.profile_settings(),
                               token_provider=lambda fresh=False: token)

    def connector(self):
        return GraphConnector(self.account)

    def deliver(self, folder: str, n: int) -> None:
        self.fake.deliver(self.address, numbered(n), folder)

    def other_client(self, action: str, category: str) -> str | None:
        """Does ``action`` to the Inbox's first message; returns its id."""
        messages = self._inbox()
        if not messages:
            return None
        first = messages[0]
        if action == "keyword":
            self.fake.set_categories(self.address, first.id, [*first.categories, category])
        elif action == "expunge":
            self._delete(first.id)
        elif action == "move":
            self._move(first.id)
        else:  # (the fakes have no read flag to set)
            return None
        return first.id

    def _inbox(self) -> list:
        return self.fake.messages_in(self.address, "Inbox")

    def _delete(self, ref: str) -> None:
        self.fake.delete_message(self.address, ref)

    def _move(self, ref: str) -> None:
        self.fake.move_message(self.address, ref, "Inbox/Projects")

    def categories(self, ref: str) -> set[str]:
        return set(self.fake.message(self.address, ref).categories)

    def settle(self) -> None:
        pass

    def close(self) -> None:
        pass


class EwsMailbox(GraphMailbox):
    """A fresh mailbox of the EWS fake; another client's actions are Outlook's."""

    protocol = "ews"

    def __init__(self, fake):
        self.fake, self.address = fake, f"probe-{uuid.uuid4().hex[:12]}@org.example"
        username = f"ORG\\{self.address.partition('@')[0]}"
        fake.add_user(username, "secret", self.address)
        fake.create_folder(self.address, "Inbox/Projects")
        self.account = ews_account(fake, address=self.address, username=username,
                                   password="secret")

    def connector(self):
        return EwsConnector(self.account)

    def categories(self, ref: str) -> set[str]:
        return set(self.fake.mailbox(self.address).items[ref].categories)

    def _inbox(self) -> list:
        return self.fake.items_in(self.address, "inbox")

    def _delete(self, ref: str) -> None:  # (deleted in Outlook: moved to Deleted Items)
        self.fake.move(self.address, ref, "deleteditems")

    def _move(self, ref: str) -> None:
        self.fake.move(self.address, ref, "Inbox/Projects")


ACTIONS = ("deliver inbox", "deliver other", "keyword", "seen", "expunge", "move")


class Mail:
    """What happens to a store: deliveries numbered in order, another client's actions."""

    def __init__(self, store):
        self.store, self.n = store, 0  # (numbers the messages and categories)
        self.categorized: dict[str, set[str]] = {}  # Inbox message -> categories given

    def do(self, action: str) -> None:
        """``action`` done; "keyword" sets a category not used before."""
        self.n += 1
        if action.startswith("deliver"):
            folders = self.store.folders
            if action == "deliver inbox" or len(folders) > 1:
                self.store.deliver(folders[0 if action == "deliver inbox" else 1], self.n)
        elif self.store.protocol != "pop3" or action == "expunge":
            category = f"Category {self.n}"
            ref = self.store.other_client(action, category)
            if action == "keyword" and ref is not None:
                self.categorized.setdefault(ref, set()).add(category)
            elif action in ("expunge", "move"):
                self.categorized.pop(ref, None)


def _run(store, mail: Mail, tag: bool, race: list[str]
         ) -> tuple[dict[str, tuple[str, str | None]], set[str]]:
    """A run: each folder read to its end; with ``tag`` its category written on what was
    read but the first message (in the Inbox after ``race``, another client's actions
    between the read and the write) and the cursor moved past that write. ((folder key,
    cursor) by folder name, the refs tagged)."""
    cursors, tagged = {}, set()
    with store.connector() as conn:
        for folder in conn.list_folders():
            if folder.name not in store.folders:
                continue
            cursor, read = None, []
            while True:
                changes = conn.fetch_changes(folder, cursor)
                cursor = changes.cursor
                read += [m.ref for m in changes.messages]
                if not changes.more:
                    break
            if tag and read and isinstance(conn, BatchKeywords):
                if folder.name == store.folders[0]:  # (where another client's actions happen)
                    for action in race:
                        mail.do(action)
                conn.set_keywords(folder, read[1:], TRACKED)
                tagged.update(read[1:])
                cursor = conn.past_own_writes(folder, cursor)
            cursors[folder.name] = (folder.key, cursor)
    return cursors, tagged


def _probe(store, cursors: dict[str, tuple[str, str | None]]) -> dict[str, bool]:
    """A probe as an idle visit makes it: ``expect``, the listing, ``unchanged``."""
    with store.connector() as conn:
        assert isinstance(conn, Probes)
        conn.expect(dict(cursors.values()))
        folders = [f for f in conn.list_folders() if f.name in cursors]
        return {f.name: conn.unchanged(f, cursors[f.name][1]) for f in folders}


def _read(store, cursors: dict[str, tuple[str, str | None]]) -> dict[str, tuple]:
    """What a read from each cursor finds, without the shortcuts a probe takes (IMAP's
    listing STATUS, Maildir's stamp): (refs of messages, refs removed, reset)."""
    found = {}
    with store.connector() as conn:
        for folder in conn.list_folders():
            if folder.name not in cursors:
                continue
            if isinstance(conn, ImapConnector):
                conn._listed_status = {}
            cursor = cursors[folder.name][1]
            if isinstance(conn, MaildirConnector):
                cursor = split_stamp(cursor)[1]
            changes = conn.fetch_changes(folder, cursor)
            found[folder.name] = ([m.ref for m in changes.messages], changes.removed,
                                  changes.reset)
    return found


@pytest.fixture(params=["imap", "imap-plain", "pop3", "maildir", "graph", "ews"])
def make_store(request, make_dovecot):
    if request.param == "maildir":
        yield MaildirTree
        return
    if request.param in ("graph", "ews"):
        fake = request.getfixturevalue("graph" if request.param == "graph" else "exchange")
        yield lambda: (GraphMailbox if request.param == "graph" else EwsMailbox)(fake)
        return
    server = (make_dovecot(imap_capability=PLAIN_IMAP) if request.param == "imap-plain"
              else request.getfixturevalue("dovecot"))
    yield lambda: DovecotUser(server, request.param.split("-")[0],
                              sees_categories=request.param == "imap")


actions = st.lists(st.sampled_from(ACTIONS), max_size=5)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(before=actions, tag=st.booleans(), race=st.lists(st.sampled_from(ACTIONS), max_size=2),
       after=actions)
def test_a_probe_never_hides_what_a_read_would_find(make_store, before, tag, race, after):
    store = make_store()
    try:
        mail = Mail(store)
        for action in ["deliver inbox", "deliver other", "deliver inbox", *before]:
            mail.do(action)
        store.settle()
        mail.categorized.clear()
        cursors, tagged = _run(store, mail, tag, race)
        if mail.categorized and store.protocol != "pop3":
            news = set(_read(store, cursors)[store.folders[0]][0])
            for ref, categories in mail.categorized.items():  # set during the run
                assert categories <= store.categories(ref), "the run's write replaced them"
                if ref not in tagged and store.sees_categories:
                    assert ref in news, "the run's write hid another client's change"
        for action in after:
            mail.do(action)
        probed = _probe(store, cursors)
        found = _read(store, cursors)
        assert set(probed) == set(found) == set(cursors)
        for name, unchanged in probed.items():
            if unchanged:
                assert found[name] == ([], [], False), (name, found[name])
        quiet = not after and not (tag and race)
        renamed = tag and store.protocol == "maildir"
        if quiet and not renamed:
            assert all(probed.values()), probed
    finally:
        store.close()
