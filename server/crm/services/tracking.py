"""Tracking: turning an email or meeting into a CRM activity, once.

One place for the idea, used by the Outlook add-in (Track, Untrack, Set regarding, compose
"Track pending") and by the sync engine (rule and folder tracking). An email is identified by
its normalized Message-ID (or a content hash), so tracking the same email from two mailboxes
or twice from the pane gives one activity — unless the organization tracks email between two
users as two activities. A *track request* (``server.crm.services.tracked``, which also answers "is
this item tracked?") records a user's wish to track an item the server has not seen yet (a
draft, or an item whose content the pane could not send); it is completed when the message
arrives, by the pane after sending or by server-side sync. The keys (Message-ID, conversation
id, addresses, tracking tokens) are ``server.mailkeys``'s, the rules the sync engine and the
add-in look them up by.

``track_emails`` tracks many emails in a handful of statements (the sync engine's batches);
``track_email`` is that with one email, so both mean exactly the same.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import func, insert, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import IntegrityError

from server.crm.activities import PARTY_COLUMNS, Activity, ActivityParty, Appointment, Attachment, Email
from server.crm.html import html_to_text, sanitize_html
from server.crm.models import Organization
from server.crm.registry import RECORD_TYPES
from server.crm.services import records
from server.crm.services.resolution import Match, resolve
from server.crm.services.tracked import (OpenRequests, TrackRequest, find_tracked, open_requests,
                                        own_request)
from server.crm.services.tracked_content import (AppointmentContent, AttachmentContent,  # noqa: F401
                                                  EmailContent, Party)
from server.bulk import insert_objects, insert_rows
from server.db import cached_statement, db, in_values, utcnow
from server.errors import Forbidden, Invalid, NotFound
from server.i18n import N_
from server.mailkeys import (conversation_id, in_reply_to_id, make_token, normalize_address,
                             normalize_message_id)
from server.security import authz
from server.security.authz import Principal
from server.security.models import Team, User


# -- helpers ----------------------------------------------------------------------------------

def _org() -> Organization:
    return db.session.get(Organization, 1)


def _owner_of(p: Principal, owner) -> User | Team:
    return owner if owner is not None else p.user


def check_regarding(p: Principal, regarding: tuple[str, int] | None, record=None
                    ) -> tuple[str, int] | None:
    """The regarding target exists, the user can read it and may append activities to it.
    ``record``: the target, already loaded (the same checks, made on it: no query)."""
    if regarding is None:
        return None
    kind, record_id = regarding
    if kind not in RECORD_TYPES or kind == "queue":
        raise Invalid(N_("An activity can be regarding an account, contact, lead, opportunity or case."),
                      {"regarding": N_("Unsupported record type.")})
    model = RECORD_TYPES[kind].model
    if isinstance(record, model) and record.id == int(record_id):
        if not authz.can(p, "read", record):
            raise NotFound()
    else:
        record = authz.get(p, model, int(record_id))
    if not authz.can(p, "append_to", record):
        raise Forbidden(N_("You may not link activities to this %(kind)s.",
                           kind=RECORD_TYPES[kind].noun))
    return kind, record.id


def _stored(digest: str, content: bytes) -> dict:
    """Where an attachment's bytes go: the row, or a file under the instance folder named
    by their hash (``REGARDING_ATTACHMENT_STORAGE = "disk"``)."""
    if current_app.config.get("REGARDING_ATTACHMENT_STORAGE") == "disk":
        folder = Path(current_app.instance_path) / "attachments" / digest[:2]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / digest
        if not path.exists():
            path.write_bytes(content)
        return {"content": None, "storage_path": str(path.relative_to(current_app.instance_path))}
    return {"content": content, "storage_path": None}


def attachment_values(items: list[AttachmentContent], limit: int) -> list[dict]:
    """Attachment rows (without ``activity_id``); over ``limit`` bytes (or not sent) only
    the metadata is kept."""
    rows = []
    for item in items:
        row = {"filename": (item.filename or "attachment")[:255],
               "content_type": (item.content_type or "application/octet-stream")[:200],
               "size": item.size, "sha256": None, "content": None, "storage_path": None,
               "content_id": (item.content_id or None) and item.content_id[:300],
               "is_inline": bool(item.inline), "content_omitted": False}
        if item.content is None or item.size > limit or len(item.content) > limit:
            row["content_omitted"] = True
        else:
            row["sha256"] = item.sha256 or hashlib.sha256(item.content).hexdigest()
            row["size"] = len(item.content)
            row.update(_stored(row["sha256"], item.content))
        rows.append(row)
    return rows


def add_attachments(activity: Activity, items: list[AttachmentContent], limit: int) -> None:
    """Attach files to an activity (see ``attachment_values``)."""
    for row in attachment_values(items, limit):
        activity.attachments.append(Attachment(**row))


def party_values(roles: list[tuple[str, Party]], matches: dict[str, list[Match]]) -> list[dict]:
    """Party rows (without ``activity_id``): the record an address resolved to, else the
    bare address."""
    rows = []
    for role, (name, address) in roles:
        row = {"role": role, "address": normalize_address(address) or (address or "")[:320] or None,
               "name": (name or None) and name[:200]}
        found = matches.get(address) or []
        kind = found[0].record_type if found else None
        for k, column in PARTY_COLUMNS.items():
            row[column] = found[0].record_id if k == kind else None
        rows.append(row)
    return rows


def _add_parties(p: Principal, activity: Activity, roles: list[tuple[str, Party]]) -> dict:
    """Parties resolved to records ``p`` may read in one batch; the bare address kept when
    unresolved or unreadable (``records.visible_matches``)."""
    matches = records.resolve_for(p, [a for _, (_, a) in roles if a])
    for row in party_values(roles, matches):
        activity.parties.append(ActivityParty(**row))
    return matches


def _dedupe_key(identity: str, content: EmailContent, owner, org: Organization) -> str:
    if not org.track_between_users_as_two:
        return identity
    addresses = [a for _, a in ([content.from_] if content.from_ else []) + content.to + content.cc]
    matched = resolve(addresses)
    sender_is_user = content.from_ and any(m.record_type == "user" for m in matched.get(content.from_[1], []))
    recipient_is_user = any(m.record_type == "user" for _, a in content.to + content.cc
                            for m in matched.get(a, []))
    return f"{identity}#owner:{owner.id}" if sender_is_user and recipient_is_user else identity


def _complete_requests(p: Principal, emails: list[tuple[Email, bool]],
                       requests: OpenRequests) -> None:
    """Pending requests for these messages (by Message-ID or tracking token) are done, in
    order (a request is completed once); the first one's regarding applies when the tracker
    gave none, if the request's user may make that change (``may_relink``: the email may be
    someone else's). A refused request fails with the reason and names no activity.
    ``emails``: (email, whether the tracker gave a regarding); ``requests``: the open ones
    naming them."""
    ids = {email.message_id for email, _ in emails if email.message_id}
    tokens = {email.tracking_token for email, _ in emails if email.tracking_token}
    if not requests.covers(ids, tokens):
        requests = open_requests(ids, tokens)
    pending = requests.find("pending", ids=ids, tokens=tokens)
    for email, regarding_given in emails:
        for req in pending:
            if req.status != "pending" or not (
                    req.internet_message_id == email.message_id
                    or (email.tracking_token and req.tracking_token == email.tracking_token)):
                continue
            requester = p if req.user_id == p.user_id else authz.principal(db.session.get(User, req.user_id))
            if not regarding_given and email.regarding_ref is None and req.regarding_ref:
                if not may_relink(requester, email, req.regarding_ref):
                    req.status, req.reason, req.completed_on = "failed", RELINK_REFUSED, utcnow()
                    req.activity_id = None
                    continue
                email.set_regarding(*req.regarding_ref)
                if email.id is not None and requester is not p:
                    email.modified_by_id, email.modified_on = requester.user_id, utcnow()
            req.status, req.completed_on = "done", utcnow()
            req.activity_id = email.id if authz.can(requester, "read", email) else None
            req.internet_message_id = req.internet_message_id or email.message_id


RELINK_REFUSED = ("This item is already tracked, and you may not change what it is regarding "
                  "(that needs write and append on its activity).")


def may_relink(p: Principal, activity: Activity, regarding: tuple[str, int], record=None) -> bool:
    """Whether ``p`` may set a tracked activity regarding a record: write and append on the
    activity, append to on the record (``check_regarding``; ``record``: it, loaded)."""
    if not (authz.can(p, "write", activity) and authz.can(p, "append", activity)):
        return False
    try:
        check_regarding(p, regarding, record)
    except (Forbidden, NotFound, Invalid):
        return False
    return True


def _relink(p: Principal, activity: Activity, regarding: tuple[str, int], record=None) -> None:
    """The one way tracking changes what an already tracked activity is regarding (the
    add-in's Track, a tracked folder, REST, a meeting tracked again): checked for ``p``
    (for sync, the mailbox owner), ``modified_by`` records them. The refusal names nothing
    about the activity, which may be someone else's the caller cannot read."""
    if regarding == activity.regarding_ref:
        return
    if not may_relink(p, activity, regarding, record):
        raise Forbidden(RELINK_REFUSED)
    activity.set_regarding(*regarding)
    activity.modified_by_id, activity.modified_on = p.user_id, utcnow()


# -- the services -------------------------------------------------------------------------------

@dataclass(frozen=True)
class EmailTrack:
    """One email for ``track_emails``, with what ``track_email`` takes besides it."""

    content: EmailContent
    regarding: tuple[str, int] | None = None
    owner: User | Team | None = None
    direction: str | None = None
    mailbox_id: int | None = None
    correlation_method: str | None = None
    parent_activity_id: int | None = None
    regarding_wins: bool = False
    status: str | None = None


def track_email(p: Principal, content: EmailContent, *, regarding: tuple[str, int] | None = None,
                owner=None, direction: str | None = None, mailbox_id: int | None = None,
                correlation_method: str | None = None, parent_activity_id: int | None = None,
                regarding_wins: bool = False, status: str | None = None) -> tuple[Email, bool]:
    """Track an email; returns ``(email, created)``. Idempotent: an email already tracked is
    returned as it is, except that ``regarding_wins`` (folder tracking) re-links it and a
    regarding fills an empty one."""
    return track_emails(p, [EmailTrack(
        content, regarding=regarding, owner=owner, direction=direction, mailbox_id=mailbox_id,
        correlation_method=correlation_method, parent_activity_id=parent_activity_id,
        regarding_wins=regarding_wins, status=status)])[0]


def track_emails(p: Principal, items: list[EmailTrack], *,
                 resolved: dict[str, list[Match]] | None = None,
                 requests: OpenRequests | None = None) -> list[tuple[Email, bool]]:
    """Track emails as ``track_email`` would one after the other, in a few statements: one
    query each for the emails already tracked and the open track requests (the user's
    untracked marks, everyone's pending requests), one ``resolve`` for every party, one
    flush that inserts the new activities, parties and attachments in bulk. ``resolved``:
    addresses the caller resolved already for this user (``resolve(..., user_id=p.user_id)``),
    so they are not resolved again; ``requests``: the open requests the caller read already
    (``open_requests``), used when they name every one of these emails.
    Any refusal (privilege, regarding) raises and tracks none of them."""
    authz.require_named(p, "track_email")
    org = _org()
    checked: dict[tuple[str, int], tuple[str, int] | None] = {}
    may_create: dict[tuple[str, int], bool] = {}
    planned = []
    for item in items:
        regarding = item.regarding
        if regarding is not None:
            key = (regarding[0], int(regarding[1]))
            if key not in checked:
                checked[key] = check_regarding(p, regarding)
            regarding = checked[key]
        owner = _owner_of(p, item.owner)
        identity = item.content.identity
        planned.append((item, regarding, owner, identity,
                        _dedupe_key(identity, item.content, owner, org)))
    keys = {key for *_, key in planned}
    known = {email.dedupe_key: email for email in db.session.scalars(cached_statement(
        ("tracked by dedupe key",), lambda: select(Email).where(in_values(Email.dedupe_key, "keys")),
        prepared=True), {"keys": list(keys)})} if keys else {}
    # The requests naming these emails: by identity (as given and as a request stores it)
    # and by the tracking tokens of the new emails and of those tracked already.
    identities = {identity for *_, identity, _ in planned if identity}
    ids = (identities | {normalize_message_id(i) for i in identities}) - {None}
    tokens = ({item.content.tracking_token for item in items}
              | {known[key].tracking_token for key in keys if key in known}) - {None}
    if requests is None or not requests.covers(ids, tokens):
        requests = open_requests(ids, tokens)
    _clear_untracked_all(p, ids, requests)
    results: list[tuple[Email, bool]] = []
    new: list[tuple[Email, EmailTrack]] = []
    for item, regarding, owner, identity, key in planned:
        existing = known.get(key)
        if existing is not None:
            if regarding and (item.regarding_wins or existing.regarding_ref is None):
                _relink(p, existing, regarding)
            results.append((existing, False))
            continue
        owner_key = (type(owner).__name__, owner.id)
        if owner_key not in may_create:
            may_create[owner_key] = authz.can_create(
                p, Email, owner.business_unit_id, owner.id if isinstance(owner, User) else None)
        if not may_create[owner_key]:
            raise Forbidden(N_("You may not create email activities."))
        email = _new_email(p, item, regarding, owner, identity, key)
        known[key] = email  # the same email twice in one call is one activity
        results.append((email, True))
        new.append((email, item))
    if new:
        roles = {id(email): _roles(item.content) for email, item in new}
        wanted = {a for r in roles.values() for _, (_, a) in r if a}
        matches = {a: m for a, m in (resolved or {}).items() if a in wanted}
        missing = [a for a in wanted if a not in matches]
        if missing:
            matches.update(resolve(missing, user_id=p.user_id))
        # Parties link to records the tracking user (for sync: the mailbox owner) may read
        # only; another record behind an address leaves the bare address, as in REST.
        matches = records.visible_matches(p, matches)
        _add_emails([email for email, _ in new])
        # Parties and attachments need no ids back: multi-row INSERTs (SQLite cannot get
        # RETURNING ids of many rows back in order, so the ORM would insert them one by one).
        parties = [{**row, "activity_id": email.id, "occurred_on": email.occurred_on}
                   for email, _ in new for row in party_values(roles[id(email)], matches)]
        files = [{**row, "activity_id": email.id} for email, item in new
                 for row in attachment_values(item.content.attachments, org.attachment_max_bytes)]
        connection = db.session.connection()
        # Core (the ORM's bulk form splits on None values): one statement, COPY on PostgreSQL
        insert_rows(connection, ActivityParty.__table__, parties)
        if files:
            connection.execute(insert(Attachment.__table__), files)
        for email, _ in new:
            db.session.expire(email, ["parties", "attachments"])
    _complete_requests(p, [(email, checked_regarding is not None) for (email, _), (_, checked_regarding, *_)
                        in zip(results, planned)], requests)
    db.session.flush()
    return results


def _roles(content: EmailContent) -> list[tuple[str, Party]]:
    return ([("from", content.from_)] if content.from_ else []) + \
        [("to", x) for x in content.to] + [("cc", x) for x in content.cc] + \
        [("bcc", x) for x in content.bcc]


def _new_email(p: Principal, item: EmailTrack, regarding: tuple[str, int] | None,
               owner: User | Team, identity: str, key: str) -> Email:
    content, direction = item.content, item.direction
    html = (content.html_sanitized if content.html_sanitized is not None
            else sanitize_html(content.html_body)) if content.html_body else None
    text = content.text_body if content.text_body is not None else (html_to_text(html) if html else None)
    if direction is None:
        own = {normalize_address(a) for a in getattr(owner, "emails", None) or [getattr(owner, "email", None)] if a}
        direction = "outgoing" if content.from_ and normalize_address(content.from_[1]) in own else "incoming"
    occurred = content.received_on or content.sent_on or utcnow()
    values = dict(
        subject=(content.subject or "")[:400], description=(text or "")[:20000] or None,
        direction=direction,
        status=item.status or ("sent" if direction == "outgoing" else "received"),
        state="completed", html_body=html, text_body=text, message_id=identity, dedupe_key=key,
        in_reply_to=in_reply_to_id(content.in_reply_to),
        references=" ".join(filter(None, (normalize_message_id(r) for r in content.references))) or None,
        conversation_index=content.conversation_index,
        conversation_id=conversation_id(content.conversation_index),
        tracking_token=content.tracking_token, sent_on=content.sent_on,
        received_on=content.received_on, occurred_on=occurred, actual_end=occurred,
        correlation_method=item.correlation_method, parent_activity_id=item.parent_activity_id,
        receiving_mailbox_id=item.mailbox_id,
        sender_address=normalize_address(content.from_[1]) if content.from_ else None,
        to_recipients="; ".join(a for _, a in content.to)[:4000] or None,
        owning_business_unit_id=owner.business_unit_id,
        created_by_id=p.user_id, modified_by_id=p.user_id,
        **{"owner_user_id" if isinstance(owner, User) else "owner_team_id": owner.id},
        **(Email.regarding_values(*regarding) if regarding else {}))
    return Email(**_unless_null(Email, values))


# model -> its attributes whose columns a new row leaves NULL when they are not given
_NULL_BY_DEFAULT: dict[type, frozenset[str]] = {}


def _unless_null(model: type, values: dict) -> dict:
    """``values`` for a new ``model`` object, less the Nones its row gets anyway (columns
    without a default): the INSERT is the same, and each attribute set on a new ORM object
    costs an event (the sync engine makes one email per tracked message)."""
    nulls = _NULL_BY_DEFAULT.get(model)
    if nulls is None:
        nulls = _NULL_BY_DEFAULT[model] = frozenset(
            attr.key for attr in sa_inspect(model).column_attrs
            if all(c.default is None and c.server_default is None for c in attr.columns))
    return {k: v for k, v in values.items() if v is not None or k not in nulls}


def _add_emails(emails: list[Email]) -> None:
    """Add new emails to the session and write them: in bulk, their ids set.

    On PostgreSQL ``bulk.insert_objects`` takes their ids from the sequence and writes them
    by COPY. SQLite cannot say which returned id is which row's, so the ORM
    would insert the activities one row a statement: instead the first email is flushed
    alone, which gives its id and the database's write lock until the transaction ends;
    when that id is the highest (SQLite gives a new row the highest id plus one), the next
    ids are free and the other emails take them, which needs no RETURNING."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        insert_objects(emails)
        return
    if dialect == "sqlite" and len(emails) > 1:
        first, emails = emails[0], emails[1:]
        db.session.add(first)
        db.session.flush()
        table = Activity.__table__
        if db.session.scalar(select(func.max(table.c.id))) == first.id:
            for offset, email in enumerate(emails, 1):
                email.id = first.id + offset
    db.session.add_all(emails)
    db.session.flush()


def track_appointment(p: Principal, content: AppointmentContent, *,
                      regarding: tuple[str, int] | None = None, owner=None) -> tuple[Appointment, bool]:
    """Track a meeting: organizer and attendees become parties. Idempotent by UID."""
    authz.require_named(p, "track_email")
    regarding = check_regarding(p, regarding)
    owner = _owner_of(p, owner)
    _clear_untracked(p, content.uid)
    existing = db.session.scalar(select(Appointment).where(Appointment.global_object_id == content.uid))
    if existing is not None:
        if regarding:
            _relink(p, existing, regarding)
        db.session.flush()
        return existing, False
    if not authz.can_create(p, Appointment, owner.business_unit_id,
                            owner.id if isinstance(owner, User) else None):
        raise Forbidden(N_("You may not create appointments."))
    html = sanitize_html(content.html_body) if content.html_body else None
    appt = Appointment(
        subject=(content.subject or "")[:400], global_object_id=content.uid[:400],
        description=content.text_body or (html_to_text(html) if html else None),
        location=(content.location or None) and content.location[:200], is_all_day=content.is_all_day,
        scheduled_start=content.start, scheduled_end=content.end,
        occurred_on=content.start or utcnow(), state="open",
        owning_business_unit_id=owner.business_unit_id, created_by_id=p.user_id,
        modified_by_id=p.user_id)
    if isinstance(owner, User):
        appt.owner_user_id = owner.id
    else:
        appt.owner_team_id = owner.id
    if regarding:
        appt.set_regarding(*regarding)
    roles = ([("organizer", content.organizer)] if content.organizer else []) + \
        [("required", x) for x in content.required] + [("optional", x) for x in content.optional]
    _add_parties(p, appt, roles)
    savepoint = db.session.begin_nested()
    try:
        db.session.add(appt)
        db.session.flush()
    except IntegrityError:  # the item sync stored this meeting just now: one per UID
        savepoint.rollback()
        existing = db.session.scalar(select(Appointment).where(
            Appointment.global_object_id == content.uid[:400]))
        if existing is None:
            raise
        if regarding:
            _relink(p, existing, regarding)
        db.session.flush()
        return existing, False
    savepoint.commit()
    return appt, True


def new_tracking_token(org: Organization) -> str:
    """A token like ``CRM:0012345`` that nothing else carries yet."""
    while True:
        token = make_token(secrets.randbelow(10**7), org.tracking_token_prefix)
        taken = db.session.scalar(select(Email.id).where(Email.tracking_token == token).limit(1)) or \
            db.session.scalar(select(TrackRequest.id).where(TrackRequest.tracking_token == token).limit(1))
        if not taken:
            return token


def request_tracking(p: Principal, internet_message_id: str | None, *, subject: str | None = None,
                     regarding: tuple[str, int] | None = None, conversation_id: str | None = None,
                     item_type: str = "email", reason: str | None = None,
                     starts_on: datetime | None = None) -> TrackRequest:
    """Record "track this when it arrives" (compose, or content the pane could not send).
    When the org uses tracking tokens the request gets one for the subject."""
    authz.require_named(p, "track_email")
    regarding = check_regarding(p, regarding)
    mid = normalize_message_id(internet_message_id)
    req = db.session.scalar(select(TrackRequest).where(
        TrackRequest.user_id == p.user_id, TrackRequest.internet_message_id == mid)) if mid else None
    if req is None:
        req = TrackRequest(user_id=p.user_id, internet_message_id=mid, item_type=item_type)
        db.session.add(req)
    org = _org()
    if item_type == "email" and org.use_tracking_token and not req.tracking_token:
        req.tracking_token = new_tracking_token(org)
    req.subject = (subject or "")[:400] or None
    req.conversation_id = conversation_id
    req.starts_on = starts_on
    req.status, req.reason = "pending", reason
    req.set_regarding(*(regarding or (None, None)))
    db.session.flush()
    return req


def _clear_untracked(p: Principal, identity: str | None) -> None:
    """Tracking an item again undoes the user's earlier Untrack of it."""
    req = own_request(p, identity=identity) if identity else None
    if req is not None and req.status == "untracked":
        db.session.delete(req)
        db.session.flush()


def _clear_untracked_all(p: Principal, identities: set[str], requests: OpenRequests) -> None:
    """``_clear_untracked`` for many emails at once (a user has one request per item)."""
    rows = requests.find("untracked", ids=identities, user_id=p.user_id)
    for req in rows:
        db.session.delete(req)
    if rows:
        db.session.flush()


def set_regarding(p: Principal, activity: Activity, regarding: tuple[str, int] | None, *,
                  record=None, flush: bool = True) -> Activity:
    """Change what an activity is regarding (pages, REST, the add-in's Set regarding): write on
    the activity; to set it also append there and append to on the target. ``record``: the
    target when the caller holds it loaded (email to case: the case it just opened), checked
    the same way without reading it again; ``flush=False`` leaves writing to the caller."""
    authz.require(p, "write", activity)
    if regarding is None:
        activity.set_regarding(None, None)
        activity.modified_by_id, activity.modified_on = p.user_id, utcnow()
    else:
        authz.require(p, "append", activity)  # linking needs append here, append to there
        _relink(p, activity, check_regarding(p, regarding, record), record)
    if flush:
        db.session.flush()
    return activity


def untrack(p: Principal, identity: str, *, delete_copy: bool, item_type: str = "email") -> bool:
    """Stop tracking an item for this user. The CRM copy is deleted only when asked, and only
    when the user owns it and may delete it; otherwise only the user's link is removed and
    the record stays, as Dynamics does. Returns whether the copy was deleted."""
    key = normalize_message_id(identity) if item_type == "email" else identity
    if not key:
        raise Invalid(N_("The item's id is needed."), {"internet_message_id": N_("Required.")})
    activity = find_tracked(p, key, item_type)
    req = own_request(p, identity=key)
    if activity is None and req is None:
        raise NotFound(N_("This item is not tracked."))
    deleted = False
    if activity is not None and delete_copy and activity.owner_user_id == p.user_id \
            and authz.can(p, "delete", activity):
        db.session.delete(activity)
        deleted = True
    if req is None:
        req = TrackRequest(user_id=p.user_id, internet_message_id=key, item_type=item_type)
        db.session.add(req)
    req.status, req.completed_on, req.activity_id = "untracked", utcnow(), None
    req.set_regarding(None, None)
    db.session.flush()
    return deleted
