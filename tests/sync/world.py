"""A small CRM world for the engine tests: a seller with a mailbox, customers,
an opportunity, a support queue, raw messages, and shortcuts to process them."""
from __future__ import annotations

import itertools
from datetime import datetime, timezone

from sqlalchemy import func, select

from server.crm.services import records
from server.crm.activities import Email
from server.crm.models import Organization, Queue
from server.crm.registry import RECORD_TYPES
from server.db import db
from server.security import authz
from server.sync.connectors.base import FetchedMessage, Folder
from server.sync.engine.folders import FolderInfo
from server.sync.models import EmailServerProfile, FolderRule, Mailbox, MessageDecision
from server.sync.engine.batch import process
from server.sync.engine.context import MailboxRun
from server.sync.mail.decision import FolderRole
from tests.sync.conftest import build_raw

_refs = itertools.count(1)
INBOX = FolderInfo(Folder(key="inbox", name="INBOX", role="inbox"), FolderRole.INBOX)
SENT = FolderInfo(Folder(key="sent", name="Sent", role="sent"), FolderRole.SENT)


def org() -> Organization:
    return db.session.get(Organization, 1)


def profile(protocol: str = "maildir", **fields) -> EmailServerProfile:
    from server.security.bootstrap import root_unit
    prof = EmailServerProfile(name=fields.pop("name", f"{protocol} profile {next(_refs)}"),
                              incoming_protocol=protocol, outgoing_protocol=fields.pop(
                                  "outgoing_protocol", None),
                              owning_business_unit_id=root_unit().id, **fields)
    db.session.add(prof)
    db.session.flush()
    return prof


def mailbox(owner=None, *, queue: Queue | None = None, prof=None, **fields) -> Mailbox:
    """An enabled, approved mailbox for a user (or a queue)."""
    address = fields.pop("email_address", None) or (queue.email if queue else owner.email)
    box = Mailbox(name=fields.pop("name", address), email_address=address,
                  user_id=owner.id if owner is not None and queue is None else None,
                  queue_id=queue.id if queue else None,
                  server_profile_id=(prof or profile()).id, enabled=fields.pop("enabled", True),
                  email_approved=True,
                  owning_business_unit_id=(owner.business_unit_id if owner is not None
                                           else queue.owning_business_unit_id), **fields)
    db.session.add(box)
    db.session.flush()
    return box


def record(user, kind: str, **data):
    return records.create(authz.principal(user), RECORD_TYPES[kind], data)


def support_queue(make_user) -> tuple[Queue, object]:
    """The "Support" queue (support@org.example), owned by the "Care" team of one agent
    (agent@org.example, a Customer Service Representative); returns it and the team."""
    from server.security.models import Team
    agent = make_user("agent@org.example", name="Agent Smith",
                      roles=["Customer Service Representative"])
    team = Team(name="Care", business_unit_id=agent.business_unit_id, members=[agent])
    db.session.add(team)
    db.session.flush()
    queue = Queue(name="Support", email="support@org.example", owner_team_id=team.id,
                  owning_business_unit_id=team.business_unit_id)
    db.session.add(queue)
    db.session.flush()
    return queue, team


def folder_rule(box: Mailbox, key: str, name: str, regarding=None, **fields) -> FolderRule:
    rule = FolderRule(mailbox_id=box.id, user_id=box.user_id, folder_key=key, folder_name=name,
                      **fields)
    if regarding is not None:
        rule.set_regarding(*regarding)
    db.session.add(rule)
    db.session.flush()
    return rule


def tracked_folder(rule: FolderRule) -> FolderInfo:
    return FolderInfo(Folder(key=rule.folder_key, name=rule.folder_name), FolderRole.TRACKED,
                      rule.id, rule.regarding_ref)


def raw(sender="Ann Customer <ann@customer.example>", to="bob@org.example", subject="Hello",
        mid=None, body="Hello there.\r\n", extra=None, **headers) -> bytes:
    fields = {"From": sender, "To": to, "Subject": subject,
              "Message-ID": f"<{mid or f'auto{next(_refs)}@customer.example'}>"}
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    return build_raw(body, fields, extra)


def fetched(data: bytes, ref: str | None = None, keywords=(), arrived_on=None) -> FetchedMessage:
    return FetchedMessage(ref=ref or str(next(_refs)), raw=data, keywords=tuple(keywords),
                          arrived_on=arrived_on or datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc))


def run_for(box: Mailbox, connector=None) -> MailboxRun:
    return MailboxRun.load(box, connector)


def put(box: Mailbox, data: bytes, folder: FolderInfo = INBOX, **kw):
    """Process one message for ``box`` and commit; returns the outcome."""
    outcome = process(run_for(box), folder, fetched(data, **kw))
    db.session.commit()
    return outcome


# Mail that tells the tracking options apart (``raw`` arguments by name), and which of it
# each option tracks (with an email Bob tracked earlier as <orig1@org.example>).
OPTION_MAIL = {
    "reply": dict(sender="stranger@else.example", subject="RE: Quote", in_reply_to="<orig1@org.example>"),
    "contact": dict(sender="Ann Customer <ann@customer.example>", subject="Question"),
    "colleague": dict(sender="Carol Colleague <carol@org.example>", subject="Lunch?"),
    "unknown": dict(sender="someone@else.example", subject="Hi"),
    "newsletter": dict(sender="ann@customer.example", subject="News", extra=[("List-Id", "<news.customer.example>")]),
    "auto-reply": dict(sender="ann@customer.example", subject="Automatic reply: Quote",
                       extra=[("Auto-Submitted", "auto-replied")]),
}
TRACKED_UNDER = {
    "all": {"reply", "contact", "colleague", "unknown"},
    "crm_responses": {"reply"},
    "from_crm_records": {"reply", "contact"},
    "from_email_enabled": {"reply", "contact", "colleague"},
    "none": set(),
}


def emails(**where) -> list[Email]:
    query = select(Email).order_by(Email.id)
    for name, value in where.items():
        query = query.where(getattr(Email, name) == value)
    return list(db.session.scalars(query))


def tracked(mid: str) -> list[Email]:
    """The CRM emails with this Message-ID (without its angle brackets)."""
    return emails(message_id=mid)


def count_emails() -> int:
    return db.session.scalar(select(func.count()).select_from(Email))


def decision(box: Mailbox, identity: str) -> MessageDecision | None:
    return db.session.scalar(select(MessageDecision).where(
        MessageDecision.mailbox_id == box.id, MessageDecision.identity == identity))


# --------------------------------------------------------------------------- a small CRM

def build_crm(make_user):
    """Bob the seller (bob@org.example), Carol a colleague, Ann a contact at Fabrikam and
    the "Contoso deal" opportunity."""
    from types import SimpleNamespace
    bob = make_user("bob@org.example", name="Bob Seller")
    carol = make_user("carol@org.example", name="Carol Colleague")
    ann = record(bob, "contact", first_name="Ann", last_name="Customer",
                 email1="ann@customer.example")
    acc = record(bob, "account", name="Fabrikam", email1="info@fabrikam.example")
    opp = record(bob, "opportunity", name="Contoso deal", customer_account_id=acc.id)
    db.session.commit()
    return SimpleNamespace(bob=bob, carol=carol, ann=ann, acc=acc, opp=opp,
                           p=authz.principal(bob))


def track_earlier(crm, mid="orig1@org.example", regarding=None, **fields):
    """An email Bob tracked earlier (what later mail answers)."""
    from server.crm.services import tracking
    from server.crm.services.tracking import EmailContent
    content = EmailContent(message_id=mid, subject=fields.pop("subject", "Quote"),
                           from_=("Bob Seller", "bob@org.example"),
                           to=[("Ann", "ann@customer.example")], text_body="Our quote.", **fields)
    email, _ = tracking.track_email(crm.p, content,
                                    regarding=regarding or ("opportunity", crm.opp.id))
    db.session.commit()
    return email


# --------------------------------------------------------------------------- mail stores

class MaildirStore:
    """A user's Maildir tree under a store, as the maildir profile reads it."""

    protocol = "maildir"

    def __init__(self, store, address):
        from server.sync.connectors.maildir import create_maildir, mailbox_root
        self.store, self.address = store, address
        self.root = create_maildir(mailbox_root(store, address), ["Sent"])

    def profile_fields(self) -> dict:
        return {"maildir_root": str(self.store)}

    def mailbox_fields(self) -> dict:
        return {}

    def deliver(self, data: bytes, folder: str = "INBOX") -> str:
        from server.sync.connectors.maildir import deliver
        return deliver(self.root, folder, data)

    def create_folder(self, name: str) -> None:
        from server.sync.connectors.maildir import create_maildir
        create_maildir(self.root, [name])

    def rename_folder(self, old: str, new: str) -> None:
        import os
        from server.sync.connectors.maildir import folder_path
        os.rename(folder_path(self.root, old), folder_path(self.root, new))

    def _file(self, ref: str, folder: str):
        from server.sync.connectors.maildir import folder_path
        path = folder_path(self.root, folder)
        return next(p for sub in ("new", "cur") for p in (path / sub).iterdir()
                    if p.name.split(":")[0] == ref)

    def move(self, ref: str, source: str, target: str) -> None:
        """As a mail client does: the file goes into the other folder's cur/."""
        import os
        from server.sync.connectors.maildir import folder_path
        file = self._file(ref, source)
        name = file.name if ":2," in file.name else file.name + ":2,S"
        os.rename(file, folder_path(self.root, target) / "cur" / name)

    def copy(self, ref: str, source: str, target: str) -> str:
        """As a mail client does: a new file (a name of its own) written through the other
        folder's tmp/ into its cur/; returns its ref."""
        from datetime import datetime, timezone
        from server.sync.connectors.maildir import deliver
        file = self._file(ref, source)
        return deliver(self.root, target, file.read_bytes(), seen=True, msg_time=datetime.fromtimestamp(
            file.stat().st_mtime, timezone.utc))

    def keywords(self, folder: str) -> list[set[str]]:
        """The categories of each message in a folder."""
        from server.sync.connectors.base import Account
        from server.sync.connectors.maildir import MaildirConnector
        with MaildirConnector(Account(address=self.address, root=str(self.root))) as md:
            target = next(f for f in md.list_folders() if f.name == folder)
            return [set(m.keywords) for m in md.fetch_changes(target, None).messages]


class ImapStore:
    """A Dovecot user, read over IMAP."""

    protocol = "imap"

    def __init__(self, server, user):
        self.server, self.user = server, user
        self.address = user.username

    def profile_fields(self) -> dict:
        return {"incoming_host": self.server.host, "incoming_port": self.server.imap_port,
                "incoming_security": "none"}

    def mailbox_fields(self) -> dict:
        return {"username": self.user.username, "password": self.user.password}

    def deliver(self, data: bytes, folder: str = "INBOX") -> str:
        return str(self.server.deliver(self.user, data, folder))

    def create_folder(self, name: str) -> None:
        self.server.create_mailbox(self.user, name)

    def rename_folder(self, old: str, new: str) -> None:
        client = self.server.imap_client(self.user)
        try:
            client.rename_folder(old, new)
        finally:
            client.logout()

    def move(self, ref: str, source: str, target: str) -> None:
        """IMAP MOVE from a second client connection, as Outlook or Thunderbird does."""
        self._client_does("move", ref, source, target)

    def copy(self, ref: str, source: str, target: str) -> None:
        """IMAP COPY from a second client connection (the original stays)."""
        self._client_does("copy", ref, source, target)

    def _client_does(self, verb: str, ref: str, source: str, target: str) -> None:
        client = self.server.imap_client(self.user)
        try:
            client.select_folder(source)
            getattr(client, verb)([int(ref)], target)
        finally:
            client.logout()

    def keywords(self, folder: str) -> list[set[str]]:
        from server.sync.connectors.imap import keyword_to_category
        client = self.server.imap_client(self.user)
        try:
            client.select_folder(folder, readonly=True)
            flags = client.get_flags(client.search(["ALL"]))
        finally:
            client.logout()
        return [{keyword_to_category(f.decode()) for f in fl if not f.startswith(b"\\")}
                for _, fl in sorted(flags.items())]


def bob_store(kind: str, request, tmp_path) -> MaildirStore | ImapStore:
    """Bob's mail store of one ``kind``: a Maildir tree under ``tmp_path``, or his account
    on the test's Dovecot (``imap``)."""
    if kind == "maildir":
        return MaildirStore(tmp_path / "store", "bob@org.example")
    return ImapStore(request.getfixturevalue("dovecot"), request.getfixturevalue("mail_user"))


def store_mailbox(store, owner=None, **fields) -> Mailbox:
    """An enabled mailbox reading ``store`` (a MaildirStore or ImapStore)."""
    prof = profile(store.protocol, **store.profile_fields())
    fields = {**store.mailbox_fields(), **fields}
    fields.setdefault("email_address", store.address)
    box = mailbox(owner, prof=prof, **fields)
    db.session.commit()
    return box


def folder_keys(box: Mailbox) -> dict[str, str]:
    """name -> key of the mailbox's folders, as its connector reports them."""
    from server.sync.engine.accounts import account_for
    from server.sync.connectors import incoming
    with incoming(box.server_profile.incoming_protocol)(account_for(box, "incoming")) as conn:
        return {f.name: f.key for f in conn.list_folders()}


def draft_email(p, regarding=None, *, to: str, cc: str = "", subject: str,
                body: str | None = None):
    """A draft outgoing email from ``p``, made the one way the CRM makes drafts (the REST
    API's and the compose page's service); recipients resolve to records ``p`` may read."""
    from server.web.api import activity_writes
    parties = [{"role": role, "address": a.strip()} for role, line in (("to", to), ("cc", cc))
               for a in line.replace(";", ",").split(",") if a.strip()]
    data = {"type": "email", "subject": subject, "text_body": body, "parties": parties}
    if regarding is not None:
        data["regarding"] = {"type": regarding[0], "id": regarding[1]}
    return activity_writes.create(p, data)
