"""CRM records as the item sync sees them: the synced field values of an appointment, task
or contact (``values_of``), writing values onto one (``apply``: parties resolved to users,
contacts, accounts, leads as email is; a contact's company to the account of that name),
a new record owned by the mailbox's user (``new_record``), the UID column per kind, and
which kinds a mailbox syncs (``kinds_synced``: its method and its user's privileges)."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select

from server.crm.activities import ActivityParty, Appointment, Task
from server.crm.models import Account, Contact
from server.crm.services.resolution import resolve
from server.db import db
from server.security import authz
from server.security.models import User
from server.sync.connectors.base import ITEM_KINDS
from server.sync.items.fields import FIELDS
from server.sync.models import Mailbox

MODELS = {"appointment": Appointment, "task": Task, "contact": Contact}
UID_COLUMNS = {"appointment": "global_object_id", "task": "task_uid", "contact": "contact_uid"}
PARTY_ROLES = ("organizer", "required", "optional")
PRIVILEGES = {"appointment": "sync_appointments", "contact": "sync_contacts",
              "task": "sync_tasks"}


def uid_of(record, kind: str) -> str | None:
    return getattr(record, UID_COLUMNS[kind])


def values_of(record, kind: str) -> dict:
    """The synced fields' values of a CRM record."""
    values = {name: getattr(record, name) for name in FIELDS[kind] if name != "parties"}
    if kind == "appointment":
        values["parties"] = _parties_of(record)
    return values


def _parties_of(appointment: Appointment) -> list[dict]:
    parties = [p for p in appointment.parties if p.role in PARTY_ROLES]
    parties.sort(key=lambda p: (p.role != "organizer", p.id or 0))
    return [{"role": p.role, "address": p.address or _address_of(p), "name": p.name,
             "response": None if p.role == "organizer" else (p.response or "needs-action")}
            for p in parties]


def _address_of(party: ActivityParty) -> str | None:
    ref = party.party_ref
    if ref is None:
        return None
    kind, record_id = ref
    record = db.session.get(User if kind == "user" else MODELS.get(kind) or Account, record_id)
    if record is None:
        return None
    return getattr(record, "email", None) or getattr(record, "email1", None)


def prepare(cache: dict, kind: str, batch: list[dict], owner: User) -> None:
    """Look up what a batch of values names, in one query each: the parties' addresses
    (resolved as email's are) and the accounts of contacts' companies."""
    resolved, accounts = cache.setdefault("resolved", {}), cache.setdefault("accounts", {})
    addresses = {p["address"] for values in batch for p in values.get("parties") or ()
                 if p.get("address")} - resolved.keys()
    if addresses:
        resolved.update(resolve(sorted(addresses), user_id=owner.id))
    names = {(values.get("company_name") or "").strip().lower() for values in batch} - \
        accounts.keys() - {""}
    if names:
        found: dict[str, list[int]] = {}
        for account_id, name in db.session.execute(select(Account.id, func.lower(Account.name))
                                                   .where(func.lower(Account.name).in_(names),
                                                          Account.is_active.is_(True))):
            found.setdefault(name, []).append(account_id)
        # The one active account of that name; none where there is none, or several.
        accounts.update({name: ids[0] if len(ids := found.get(name, [])) == 1 else None
                         for name in names})


def apply(record, kind: str, values: dict, fields: list[str], owner: User,
          cache: dict | None = None) -> None:
    """Write ``fields`` of ``values`` onto the record (``cache``: what ``prepare`` found)."""
    cache = cache if cache is not None else {}
    prepare(cache, kind, [values], owner)
    for name in fields:
        if name == "parties":
            _set_parties(record, values["parties"], cache["resolved"])
        elif name == "company_name":
            record.company_name = values[name]
            record.parent_account_id = cache["accounts"].get(
                (values[name] or "").strip().lower())
        else:
            setattr(record, name, values[name])
    if kind == "contact" and not record.last_name:
        record.last_name = record.full_name or "(no name)"
    if kind != "contact":
        record.occurred_on = record.scheduled_start or record.occurred_on or \
            datetime.now(timezone.utc)
    record.modified_by_id = owner.id


def _set_parties(appointment: Appointment, parties: list[dict], resolved: dict) -> None:
    """The organizer and attendees as given, each resolved to a record where one matches,
    keeping the rows (and their links) of the addresses that stay."""
    kept = {(p.role, (p.address or "").lower()): p for p in appointment.parties
            if p.role in PARTY_ROLES}
    wanted = [p for p in parties if p.get("address")]
    rows = [p for p in appointment.parties if p.role not in PARTY_ROLES]
    for party in wanted:
        row = kept.pop((party["role"], party["address"].lower()), None)
        if row is None:
            row = ActivityParty(role=party["role"], address=party["address"])
            found = resolved.get(party["address"]) or []
            if found:
                row.set_party(found[0].record_type, found[0].record_id)
        row.name = party.get("name")
        row.response = party.get("response")
        rows.append(row)
    appointment.parties = rows


def new_record(kind: str, owner: User, uid: str):
    """A new record of ``kind`` owned by ``owner`` (the mailbox's user)."""
    model = MODELS[kind]
    record = model(owner_user_id=owner.id, owning_business_unit_id=owner.business_unit_id,
                   created_by_id=owner.id, modified_by_id=owner.id)
    setattr(record, UID_COLUMNS[kind], uid)
    if kind == "contact":
        record.last_name, record.full_name = "", ""
    else:
        record.subject, record.occurred_on = "", datetime.now(timezone.utc)
        record.state = "open"
    return record


def by_uid(kind: str, uids: list[str]) -> dict[str, object]:
    """The CRM record of each UID that has one (one appointment per meeting)."""
    if not uids:
        return {}
    model = MODELS[kind]
    column = getattr(model, UID_COLUMNS[kind])
    found = {}
    for start in range(0, len(uids), 500):
        for record in db.session.scalars(select(model).where(column.in_(uids[start:start + 500]))):
            found.setdefault(uid_of(record, kind), record)
    return found


def why_not_synced(mailbox: Mailbox) -> str | None:
    """Why this mailbox syncs no appointments, contacts or tasks at all (None: it does)."""
    if mailbox.acts_method != "server_side_sync":
        return "its appointments, contacts and tasks method is not server-side synchronization"
    if mailbox.user is None:
        return "only a user's mailbox syncs appointments, contacts and tasks"
    if not mailbox.user.is_active:
        return f"{mailbox.user.full_name} is disabled in Regarding"
    return None


def kinds_synced(mailbox: Mailbox, kinds: tuple[str, ...] = ITEM_KINDS
                 ) -> tuple[list[str], dict[str, str]]:
    """The kinds this mailbox syncs, and why it syncs each of the others (none while its
    item sync is turned off: Test & Enable tests them all the same)."""
    why = why_not_synced(mailbox) or (None if mailbox.acts_enabled else (
        "they were turned off when their server refused the sign-in; test and enable the "
        "mailbox again"))
    if why:
        return [], {kind: why for kind in kinds}
    p = authz.principal(mailbox.user)
    allowed, skipped = [], {}
    for kind in kinds:
        privilege = PRIVILEGES[kind]
        if p.has(privilege):
            allowed.append(kind)
        else:
            skipped[kind] = (f'{mailbox.user.full_name} does not have the '
                             f'"{authz.NAMED_PRIVILEGES[privilege]}" privilege')
    return allowed, skipped
