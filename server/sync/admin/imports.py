"""Importing mailboxes in one step, from a CSV file (address, owner, profile, methods) or
from a fetchmailrc (server, protocol, user, password, local names, folders), with a report
line for every input line: imported, skipped (nothing to do: the address has a mailbox
already, a ``skip`` entry) or refused, and why.

Each line goes through the same service as the mailbox form (``mailboxes.create_mailbox``,
with its privilege checks and validation) inside a savepoint, so a refused line leaves
nothing behind and the others still go in. A fetchmail entry's server becomes an email
server profile: an existing one with the same host, protocol and port, else a new one
named after the server (which needs the privilege to create profiles). Passwords go into
the mailbox, encrypted, and never into the report. The caller commits.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from sqlalchemy import func, select

from server.crm.models import Organization, Queue
from server.db import db
from server.errors import Invalid, ServiceError
from server.i18n import N_
from server.mailkeys import normalize_address
from server.security import authz
from server.security.authz import Principal
from server.security.models import User
from server.sync.admin import folder_rules as folder_admin
from server.sync.admin import mailboxes as mailbox_admin
from server.sync.admin import profiles as profile_admin
from server.sync.admin.fetchmailrc import Entry, parse
from server.sync.admin.provision import check_method
from server.sync.models import (ACTS_METHODS, INCOMING_METHODS, OUTGOING_METHODS,
                                EmailServerProfile, Mailbox)

MAX_BYTES = 2 * 1024 * 1024
MAX_LINES = 5000
CSV_COLUMNS = ("address", "owner", "profile", "incoming", "outgoing", "acts")
_PROTOCOLS = {"imap": "imap", "pop3": "pop3", "pop": "pop3", "apop": "pop3"}


@dataclass(frozen=True)
class ReportLine:
    line: int
    status: str  # imported skipped refused
    address: str | None
    reason: str


@dataclass(frozen=True)
class Report:
    lines: list[ReportLine]

    def count(self, status: str) -> int:
        return sum(1 for line in self.lines if line.status == status)


def _text(data: bytes | str) -> str:
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise Invalid(N_("The file is larger than %(size)s MB.") % {
                "size": MAX_BYTES // 1024 // 1024})
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Invalid(N_("The file is not UTF-8 text.")) from None
    return data


def _exists(address: str) -> bool:
    return db.session.scalar(select(Mailbox.id).where(
        func.lower(Mailbox.email_address) == address.lower())) is not None


def _create(p: Principal, line: int, address: str, data: dict) -> ReportLine:
    """One mailbox through the form's service, in a savepoint."""
    if _exists(address):
        return ReportLine(line, "skipped", address, "A mailbox with this address exists already.")
    savepoint = db.session.begin_nested()
    try:
        box = mailbox_admin.create_mailbox(p, {"email_address": address, **data})
        if data.get("username") or data.get("password"):  # a fetchmail entry's sign-in
            box.username, box.password = data.get("username"), data.get("password")
        db.session.flush()
    except ServiceError as exc:
        savepoint.rollback()
        reason = " ".join(exc.fields.values()) if exc.fields else exc.message
        return ReportLine(line, "refused", address, reason)
    savepoint.commit()
    return ReportLine(line, "imported", address, N_("Mailbox created: %(name)s.") % {
        "name": box.name})


# --------------------------------------------------------------------------- CSV

def import_csv(p: Principal, data: bytes | str) -> Report:
    """A header line naming the columns (``address`` and ``owner`` required; ``profile`` a
    profile's name, empty for the organization's default; ``incoming``, ``outgoing``,
    ``acts`` methods, empty for the defaults), then one mailbox per line."""
    reader = csv.reader(io.StringIO(_text(data)))
    header = [h.strip().lower() for h in next(reader, [])]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown or not {"address", "owner"} <= set(header):
        values = {"columns": ", ".join(CSV_COLUMNS), "unknown": ", ".join(unknown)}
        raise Invalid((N_("The first line must name the columns: %(columns)s (address and owner "
                          "at least); unknown: %(unknown)s.") if unknown else
                       N_("The first line must name the columns: %(columns)s (address and owner "
                          "at least).")) % values)
    org = db.session.get(Organization, 1)
    out: list[ReportLine] = []
    for row in reader:
        number = reader.line_num
        if len(out) >= MAX_LINES:
            out.append(ReportLine(number, "refused", None, N_("Only %(count)s lines are read.")
                                  % {"count": MAX_LINES}))
            break
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            out.append(ReportLine(number, "refused", None, N_("%(values)s values for %(columns)s "
                                                              "columns.") % {
                "values": len(row), "columns": len(header)}))
            continue
        values = {h: cell.strip() for h, cell in zip(header, row)}
        out.append(_csv_line(p, org, number, values))
    return Report(out)


def _csv_line(p: Principal, org: Organization, number: int, values: dict) -> ReportLine:
    address = normalize_address(values["address"]) or values["address"]
    if not normalize_address(values["address"]):
        return ReportLine(number, "refused", values["address"] or None,
                          N_("Not an email address."))
    profile_id = org.default_server_profile_id if org else None
    if values.get("profile"):
        profile_id = db.session.scalar(select(EmailServerProfile.id).where(
            func.lower(EmailServerProfile.name) == values["profile"].lower(),
            authz.scope(p, EmailServerProfile, "read")))
        if profile_id is None:
            return ReportLine(number, "refused", address, N_(
                'No email server profile you can see is named "%(name)s".') % {
                    "name": values["profile"]})
    owner = values["owner"]
    kind = "queue"  # by its name, or an address no user has but a queue does
    if "@" in owner and (db.session.scalar(select(User.id).where(
            func.lower(User.email) == owner.lower())) is not None or db.session.scalar(
            select(Queue.id).where(func.lower(Queue.email) == owner.lower())) is None):
        kind = "user"
    methods = {}
    for column, name, choices, label in (
            ("incoming", "incoming_method", INCOMING_METHODS, N_("Incoming email")),
            ("outgoing", "outgoing_method", OUTGOING_METHODS, N_("Outgoing email")),
            ("acts", "acts_method", ACTS_METHODS, N_("Appointments, contacts and tasks"))):
        given = values.get(column) or (getattr(org, f"default_{name}") if org else choices[0])
        try:
            methods[name] = check_method(given, choices, label)
        except Invalid as exc:
            return ReportLine(number, "refused", address, exc.message)
    return _create(p, number, address, {
        "owner_kind": kind, "owner": owner,
        "server_profile_id": str(profile_id) if profile_id else "", **methods})


# --------------------------------------------------------------------------- fetchmailrc

def import_fetchmailrc(p: Principal, data: bytes | str) -> Report:
    """Every user entry of the file: a mailbox for the CRM user it delivered to."""
    out: list[ReportLine] = []
    for entry in parse(_text(data))[:MAX_LINES]:
        out.append(_fetchmail_line(p, entry))
    return Report(out)


def _owner(entry: Entry) -> User | None:
    """The CRM user a fetchmail entry delivered to: a local name that is a user's address,
    else one that is the part before the @ of exactly one user's address."""
    for name in entry.local_names or ((entry.user,) if entry.user else ()):
        if "@" in name:
            user = db.session.scalar(select(User).where(func.lower(User.email) == name.lower()))
        else:
            found = db.session.scalars(select(User).where(
                func.lower(User.email).like(f"{name.lower()}@%"))).all()
            user = found[0] if len(found) == 1 else None
        if user is not None:
            return user
    return None


def _fetchmail_line(p: Principal, entry: Entry) -> ReportLine:
    where = entry.host or "?"
    if entry.problem:
        return ReportLine(entry.line, "refused", None, N_("Not readable: %(problem)s.") % {
            "problem": entry.problem})
    if entry.skipped:
        return ReportLine(entry.line, "skipped", entry.user, N_(
            "A skip entry: fetchmail does not poll %(host)s either.") % {"host": where})
    protocol = _PROTOCOLS.get(entry.protocol or "")
    if protocol is None:
        named = entry.protocol or "auto"
        return ReportLine(entry.line, "refused", entry.user, N_(
            'The protocol "%(protocol)s" cannot be imported: name imap or pop3 (proto) in the '
            "entry.") % {"protocol": named})
    owner = _owner(entry)
    if owner is None:
        names = ", ".join(entry.local_names) or entry.user
        return ReportLine(entry.line, "refused", entry.user, N_(
            "No Regarding user matches %(names)s.") % {"names": names})
    address = (entry.user if entry.user and normalize_address(entry.user) else owner.email).lower()
    if _exists(address):
        return ReportLine(entry.line, "skipped", address, N_(
            "A mailbox with this address exists already."))
    savepoint = db.session.begin_nested()  # a new profile goes only with its mailbox
    try:
        profile = _profile_for(p, entry, protocol)
    except ServiceError as exc:
        savepoint.rollback()
        fields = " ".join(exc.fields.values())
        return ReportLine(entry.line, "refused", address, f"{exc.message} {fields}".strip())
    result = _create(p, entry.line, address, {
        "owner_kind": "user", "owner": owner.email, "server_profile_id": str(profile.id),
        "incoming_method": "server_side_sync", "outgoing_method": "none",
        "acts_method": "none", "username": entry.user, "password": entry.password})
    if result.status != "imported":
        savepoint.rollback()
        return result
    savepoint.commit()
    return _with_folders(p, entry, result) if entry.folders else result


def _with_folders(p: Principal, entry: Entry, result: ReportLine) -> ReportLine:
    """The entry's ``folder(s)`` as the new mailbox's tracked folder rules, said in the
    line's reason: which are tracked, and which are not and why."""
    box = db.session.scalar(select(Mailbox).where(
        func.lower(Mailbox.email_address) == result.address))
    made, refused = folder_admin.add_rules_by_name(p, box, entry.folders)
    said = [result.reason]
    if made:
        said.append(N_("Folders tracked: %(folders)s (found by name at the first sync).")
                    % {"folders": ", ".join(made)})
    if refused:
        said.append(N_("Folders not tracked: %(folders)s.") % {"folders": "; ".join(refused)})
    if not made and not refused:
        said.append(N_("Only the Inbox is read, as fetchmail did."))
    return ReportLine(result.line, result.status, result.address, " ".join(said))


def _profile_for(p: Principal, entry: Entry, protocol: str) -> EmailServerProfile:
    security = "tls" if entry.ssl else "none"
    port = entry.port or {("imap", "tls"): 993, ("imap", "none"): 143,
                          ("pop3", "tls"): 995, ("pop3", "none"): 110}[(protocol, security)]
    found = db.session.scalar(select(EmailServerProfile).where(
        func.lower(EmailServerProfile.incoming_host) == entry.host.lower(),
        EmailServerProfile.incoming_protocol == protocol,
        EmailServerProfile.incoming_port == port,
        authz.scope(p, EmailServerProfile, "read")).order_by(EmailServerProfile.id).limit(1))
    if found is not None:
        return found
    return profile_admin.create_profile(p, {
        "name": f"{entry.host} ({protocol.upper()} {port})", "incoming_protocol": protocol,
        "incoming_host": entry.host, "incoming_port": str(port), "incoming_security": security,
        "max_connections": "10"})
