"""Creating, changing and deleting activities from JSON, as the REST API takes them: tasks,
phone calls, appointments and emails (drafts, and tracked incoming or sent email, which go
through ``server.crm.services.tracking.track_email`` like the add-in's and sync's) with their
parties, regarding and owner. Privileges and field security are checked here.

(Simpler calls for pages live in ``server.crm.services.activity_actions``; these take the full
JSON shape described by ``server.web.serialize``.)
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import undefer

from server.crm.activities import (ACTIVITY_MODELS, PARTY_TYPES, REGARDING_TYPES, Activity,
                                   ActivityParty, Attachment, Email)
from server.crm.html import sanitize_html
from server.crm.models import Organization
from server.crm.registry import RECORD_TYPES, Field
from server.crm.replies import MODES, answer
from server.crm.services import records as record_services
from server.crm.services.email_templates import signature_of
from server.crm.services.tracking import EmailContent, track_email
from server.crm.values import parse_value
from server.db import db, utcnow
from server.errors import Conflict, Forbidden, Invalid, Unprocessable
from server.i18n import N_, message_of
from server.security import authz
from server.security.authz import Principal
from server.security.models import RecordShare, Team, User
from server.web.api.common import invalid, load_principal, parse_ref
from server.web.serialize import ACTIVITY_READ_ONLY, ACTIVITY_TYPES, activity_fields

MAX_PARTIES = 500
PARTY_ROLES_BY_TYPE = {
    "email": ("from", "to", "cc", "bcc"),
    "appointment": ("organizer", "required", "optional"),
    "phone_call": ("from", "to"),
    "task": (),
}
# A tracked (received or sent) email keeps its content; only these may change afterwards.
TRACKED_EMAIL_EDITABLE = {"state", "priority", "description"}


def _model(kind: str):
    return User if kind == "user" else RECORD_TYPES[kind].model


# -- regarding ---------------------------------------------------------------------------------

def regarding_target(p: Principal, raw: Any, name: str = "regarding"):
    """The record of ``{"type", "id"}`` an activity may be set regarding: readable (else 400,
    as if it did not exist) and append-to (else 403)."""
    kind, ident = parse_ref(raw, name, REGARDING_TYPES)
    model = RECORD_TYPES[kind].model
    target = db.session.scalar(select(model).where(model.id == ident,
                                                   authz.scope(p, model, "read")))
    if target is None:
        raise invalid({name: N_("No such %(kind)s.", kind=RECORD_TYPES[kind].noun)})
    if not authz.can(p, "append_to", target):
        raise Forbidden(N_("You may not link activities to this %(kind)s.",
                           kind=RECORD_TYPES[kind].noun),
                        {name: N_("No append-to privilege on this record.")})
    return kind, target


# -- parties -----------------------------------------------------------------------------------

def _party_record_ok(p: Principal, kind: str, record) -> bool:
    return kind == "user" or authz.can(p, "append_to", record)


def _load_party_records(p: Principal, wanted: dict[str, set[int]]) -> dict[tuple[str, int], Any]:
    out = {}
    for kind, ids in wanted.items():
        model = _model(kind)
        for row in db.session.scalars(select(model).where(model.id.in_(ids),
                                                          authz.scope(p, model, "read"))):
            out[(kind, row.id)] = row
    return out


def _address_of(p: Principal, record) -> str | None:
    """The record's first address the caller may read (field security)."""
    emails = record_services.emails(p, record)
    return emails[0] if emails else None


def build_parties(p: Principal, kind: str, entries: Any) -> list[ActivityParty]:
    """Parties from ``[{role, address?, name?, record?: {type, id}}]``. A party without a
    record is resolved by its address to a record the caller may read and link to."""
    roles = PARTY_ROLES_BY_TYPE[kind]
    if not isinstance(entries, list):
        raise invalid({"parties": N_("Expected a list.")})
    if entries and not roles:
        raise invalid({"parties": N_("A %(kind)s has no parties.", kind=kind.replace("_", " "))})
    if len(entries) > MAX_PARTIES:
        raise invalid({"parties": N_("At most %(count)s parties.", count=MAX_PARTIES)})
    errors: dict[str, str] = {}
    parsed = []
    for i, entry in enumerate(entries):
        key = f"parties[{i}]"
        if not isinstance(entry, dict):
            errors[key] = N_("Expected an object.")
            continue
        for extra in set(entry) - {"role", "address", "name", "record"}:
            errors[f"{key}.{extra}"] = N_("Unknown field.")
        role, address, name = entry.get("role"), entry.get("address"), entry.get("name")
        if role not in roles:
            errors[f"{key}.role"] = N_("Must be one of: %(choices)s.", choices=", ".join(roles))
        ref = None
        try:
            if entry.get("record") is not None:
                ref = parse_ref(entry["record"], f"{key}.record", PARTY_TYPES)
        except Invalid as exc:
            errors.update(exc.fields)
        if address is not None:
            try:
                address = parse_value(_ADDRESS, address)
            except ValueError as exc:
                errors[f"{key}.address"] = message_of(exc)
        if name is not None:
            try:
                name = parse_value(_NAME, name)
            except ValueError as exc:
                errors[f"{key}.name"] = message_of(exc)
        if ref is None and not address:
            errors[key] = N_("Give an address or a record.")
        parsed.append((i, role, address, name, ref))
    if errors:
        raise invalid(errors)

    wanted: dict[str, set[int]] = {}
    for _, _, _, _, ref in parsed:
        if ref:
            wanted.setdefault(ref[0], set()).add(ref[1])
    unresolved = [address for _, _, address, _, ref in parsed if ref is None]
    matches = record_services.resolve_for(p, unresolved)
    for found in matches.values():
        for m in found:
            wanted.setdefault(m.record_type, set()).add(m.record_id)
    records = _load_party_records(p, wanted)

    parties = []
    for i, role, address, name, ref in parsed:
        record = None
        if ref is not None:
            record = records.get(ref)
            if record is None:
                errors[f"parties[{i}].record"] = f"No such {ref[0]}."
                continue
            if not _party_record_ok(p, ref[0], record):
                errors[f"parties[{i}].record"] = N_("You may not link activities to this record.")
                continue
        else:
            for m in matches.get(address, []):
                candidate = records.get((m.record_type, m.record_id))
                if candidate is not None and _party_record_ok(p, m.record_type, candidate):
                    ref, record = (m.record_type, m.record_id), candidate
                    break
        party = ActivityParty(role=role, address=address or (record and _address_of(p, record)),
                              name=name or (record and record_services.title(p, record)))
        if ref is not None:
            party.set_party(*ref)
        parties.append(party)
    if errors:
        raise invalid(errors)
    return parties


_ADDRESS = Field("address", N_("Address"), "email", max_length=320)
_NAME = Field("name", N_("Name"), max_length=200)


# -- fields ------------------------------------------------------------------------------------

def clean_fields(p: Principal, kind: str, data: dict[str, Any], *, creating: bool,
                 extra: set[str]) -> dict[str, Any]:
    """Parse the activity fields of ``data``; unknown, read-only and secured fields are
    errors. Names in ``extra`` (parties, regarding, ...) are left to the caller."""
    fields = {f.name: f for f in activity_fields(kind)}
    access = p.fields("activity")
    errors, clean = {}, {}
    for name, raw in data.items():
        if name in extra:
            continue
        f = fields.get(name)
        if f is None:
            errors[name] = (N_("This field is read-only.") if name in ACTIVITY_READ_ONLY[kind]
                            or name in ("id", "occurred_on", "created_on", "modified_on")
                            else N_("Unknown field."))
            continue
        if not (access.can_create(name) if creating else access.can_update(name)):
            errors[name] = N_("This field is secured; you may not set it.")
            continue
        try:
            clean[name] = parse_value(f, raw)
        except ValueError as exc:
            errors[name] = message_of(exc)
    if "percent_complete" in clean and clean["percent_complete"] is not None \
            and not 0 <= clean["percent_complete"] <= 100:
        errors["percent_complete"] = N_("From 0 to 100.")
    for name in ("state", "priority", "direction", "is_all_day", "percent_complete"):
        if name in clean and clean[name] is None:
            errors[name] = N_("This field cannot be empty.")
    if errors:
        raise invalid(errors)
    return clean


def _check_times(activity) -> None:
    if activity.scheduled_start and activity.scheduled_end \
            and activity.scheduled_end < activity.scheduled_start:
        raise invalid({"scheduled_end": N_("Ends before it starts.")})


def _apply(activity, clean: dict[str, Any]) -> None:
    for name, value in clean.items():
        if name == "html_body" and value:
            value = sanitize_html(value)
        setattr(activity, name, value)
    if clean.get("state") in ("completed", "canceled") and activity.actual_end is None:
        activity.actual_end = utcnow()
    if clean.get("state") == "completed" and activity.activity_type == "task":
        activity.percent_complete = 100
    if activity.activity_type == "appointment" and activity.scheduled_start:
        activity.occurred_on = activity.scheduled_start
    _check_times(activity)


def _email_addresses(email: Email) -> None:
    sender = next((x for x in email.parties if x.role == "from"), None)
    email.sender_address = sender.address if sender else None
    to = [x.address for x in email.parties if x.role == "to" and x.address]
    email.to_recipients = "; ".join(to) or None


def _is_tracked(clean: dict[str, Any]) -> bool:
    """A received email, or one sent outside the CRM (it has a sent time): not a draft."""
    return clean.get("direction") == "incoming" or clean.get("sent_on") is not None


def _prepare_draft(p: Principal, email: Email, clean: dict[str, Any]) -> None:
    """A draft outgoing email from the caller (sending it is the sync engine's)."""
    email.direction = clean.get("direction") or "outgoing"
    for name in ("message_id", "in_reply_to", "received_on"):
        if clean.get(name):
            raise invalid({name: N_("Only a tracked (received or sent) email has this.")})
    email.status = "draft"
    if not any(x.role == "from" for x in email.parties):
        email.parties.insert(0, ActivityParty(role="from", user_id=p.user_id,
                                              name=p.user.full_name, address=p.user.email))
    _email_addresses(email)


# What tracking takes from the request; the other fields are applied afterwards.
_TRACKED_CONTENT = {"direction", "subject", "html_body", "text_body", "message_id",
                    "in_reply_to", "sent_on", "received_on"}


def _content(clean: dict[str, Any], parties: list[ActivityParty]) -> EmailContent:
    def role(name: str) -> list[tuple[str, str]]:
        return [(x.name or "", x.address) for x in parties if x.role == name and x.address]

    sender = role("from")
    return EmailContent(
        message_id=clean.get("message_id"), subject=clean.get("subject") or "",
        from_=sender[0] if sender else None, to=role("to"), cc=role("cc"), bcc=role("bcc"),
        html_body=clean.get("html_body"), text_body=clean.get("text_body"),
        sent_on=clean.get("sent_on"), received_on=clean.get("received_on"),
        in_reply_to=clean.get("in_reply_to"))


def _track(p: Principal, data: dict[str, Any], clean: dict[str, Any], owner) -> Email:
    """A received or sent email, tracked through ``server.crm.services.tracking.track_email``: one
    activity per email (Message-ID, else a content hash; the organization's "two
    activities between users" setting), shared with the add-in and server-side sync. The
    request's parties (with the records it names, checked here) replace those tracking
    resolved. An email already tracked is a 409, nothing changed."""
    authz.require_named(p, "track_email")
    direction = clean.get("direction") or "outgoing"
    if direction == "outgoing" and clean.get("received_on"):
        raise invalid({"received_on": N_("A sent email has no received time.")})
    parties = build_parties(p, "email", data.get("parties") or [])
    regarding = None
    if data.get("regarding") is not None:
        target_kind, target = regarding_target(p, data["regarding"])
        regarding = (target_kind, target.id)
    email, created = track_email(p, _content(clean, parties), regarding=regarding, owner=owner,
                                 direction=direction)
    if not created:
        raise Conflict(N_("This email is already tracked."), {"message_id": (
            N_("An email with this Message-ID is already tracked.") if clean.get("message_id")
            else N_("An email with the same sender, subject, time and body is already tracked."))})
    if regarding is not None and not authz.can(p, "append", email):
        raise Forbidden(N_("You may not set what activities are regarding."))
    email.parties.clear()
    email.parties.extend(parties)
    _email_addresses(email)
    _apply(email, {k: v for k, v in clean.items() if k not in _TRACKED_CONTENT})
    db.session.flush()
    return email


# -- services ----------------------------------------------------------------------------------

def create(p: Principal, data: dict[str, Any]) -> Activity:
    """Create an activity of ``data["type"]`` owned by the caller (or ``data["owner"]``)."""
    kind = data.get("type")
    if kind not in ACTIVITY_TYPES:
        raise invalid({"type": N_("Must be one of: %(choices)s.", choices=", ".join(ACTIVITY_TYPES))})
    clean = clean_fields(p, kind, data, creating=True,
                         extra={"type", "owner", "regarding", "parties"})
    if kind != "email" and not (clean.get("subject") or "").strip():
        raise invalid({"subject": N_("This field is required.")})
    owner = load_principal(p, data["owner"], "owner") if data.get("owner") is not None else p.user
    if not authz.can_create(p, Activity, owner.business_unit_id,
                            owner.id if isinstance(owner, User) else None):
        raise Forbidden("You may not create activities" +
                        (" for this owner." if owner is not p.user else "."))
    if kind == "email" and _is_tracked(clean):
        return _track(p, data, clean, owner)
    now = utcnow()
    activity = ACTIVITY_MODELS[kind](
        subject="", state="open", priority="normal", occurred_on=now, created_on=now,
        modified_on=now, created_by_id=p.user_id, modified_by_id=p.user_id,
        owner_user_id=owner.id if isinstance(owner, User) else None,
        owner_team_id=owner.id if isinstance(owner, Team) else None,
        owning_business_unit_id=owner.business_unit_id)
    if "parties" in data:
        activity.parties.extend(build_parties(p, kind, data["parties"]))
    _apply(activity, clean)
    if kind == "email":
        _prepare_draft(p, activity, clean)
    if data.get("regarding") is not None:
        target_kind, target = regarding_target(p, data["regarding"])
        if not authz.can(p, "append", activity):
            raise Forbidden(N_("You may not set what activities are regarding."))
        activity.set_regarding(target_kind, target.id)
    db.session.add(activity)
    db.session.flush()
    return activity


def create_answer(p: Principal, original: Activity, mode: Any, *, me: set[str]) -> Email:
    """A draft replying to (``reply``, ``reply_all``) or forwarding ``original``, made by
    ``create`` with the caller's checks: threaded to the original (In-Reply-To and
    References come from it when sent), with its tracking token and, when the caller may
    link to it, its regarding; the caller's signature above the quoted original; a forward
    carries the original's attachments."""
    if mode not in MODES:
        raise invalid({"mode": N_("Must be one of: %(choices)s.", choices=", ".join(MODES))})
    if not isinstance(original, Email):
        raise Conflict(N_("Only an email can be answered."))
    org = db.session.get(Organization, 1)
    reply = answer(original, mode, me=me, signature=signature_of(user_id=p.user_id),
                   token_prefix=org.tracking_token_prefix)
    if "regarding" in reply.data:
        try:
            regarding_target(p, reply.data["regarding"])
        except (Invalid, Forbidden):
            del reply.data["regarding"]
    email = create(p, reply.data)
    email.parent_activity_id = reply.parent_activity_id
    email.tracking_token = reply.tracking_token if org.use_tracking_token else None
    if mode == "forward":
        for att in db.session.scalars(select(Attachment).where(
                Attachment.activity_id == original.id).options(undefer(Attachment.content))):
            email.attachments.append(Attachment(
                filename=att.filename, content_type=att.content_type, size=att.size,
                sha256=att.sha256, content=att.content, storage_path=att.storage_path,
                content_id=att.content_id, is_inline=att.is_inline,
                content_omitted=att.content_omitted))
    db.session.flush()
    return email


def update(p: Principal, activity: Activity, data: dict[str, Any]) -> Activity:
    """Change an activity's fields (and parties); regarding has its own call."""
    authz.require(p, "write", activity)
    kind = activity.activity_type
    fixed = {"regarding": "Set this with PUT /api/v1/activities/{id}/regarding.",
             "type": N_("An activity's type cannot change."),
             "owner": N_("The owner of an activity cannot change here.")}
    errors = {name: message for name, message in fixed.items() if name in data}
    if kind == "email" and "direction" in data:
        errors["direction"] = N_("An email's direction cannot change.")
    try:
        clean = clean_fields(p, kind, data, creating=False, extra={"parties", *errors})
    except Invalid as exc:
        errors.update(exc.fields)
    if errors:
        raise invalid(errors)
    if kind == "email" and activity.status != "draft":
        locked = sorted(set(data) - TRACKED_EMAIL_EDITABLE)
        if locked:
            raise Unprocessable("A tracked email keeps its content: only its state, priority "
                                "and description can change.",
                                {name: N_("Cannot change on a tracked email.") for name in locked})
    if kind == "email":
        for name in ("message_id", "in_reply_to", "received_on", "sent_on"):
            if clean.get(name):
                raise invalid({name: N_("Only a tracked email has this.")})
    if "parties" in data:
        new = build_parties(p, kind, data["parties"])
        activity.parties.clear()
        activity.parties.extend(new)
        if kind == "email":
            _email_addresses(activity)
    _apply(activity, clean)
    activity.modified_by_id = p.user_id
    activity.modified_on = utcnow()
    db.session.flush()
    return activity


def delete(p: Principal, activity: Activity) -> None:
    """Delete an activity (parties and attachments go with it) and shares of it."""
    authz.require(p, "delete", activity)
    db.session.execute(RecordShare.__table__.delete().where(
        RecordShare.table_name == "activity", RecordShare.record_id == activity.id))
    db.session.delete(activity)
    db.session.flush()
