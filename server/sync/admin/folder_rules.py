"""Folder tracking rules: a user tracks folders under their Inbox, each optionally regarding
a record. The folders are read through the mailbox's connector and kept for ten minutes.
Rules belong to the mailbox's user: they (or someone who may write their mailbox) manage
them; queues have none. Callers commit.
"""
from __future__ import annotations

import threading
import time

from sqlalchemy import String, cast, func, select

from server.crm.activities import REGARDING_COLUMNS
from server.crm.registry import RECORD_TYPES
from server.crm.services.titles import regarding_refs, titles
from server.db import db
from server.errors import Invalid, NotFound
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal
from server.sync.admin import forms
from server.sync.models import FolderRule, Mailbox

FOLDER_CACHE_SECONDS = 600


# mailbox id -> (when read, what it was read as, the folders): what it was read as (the
# database, the address, profile and user name) must still hold, so that a mailbox that
# changed, or another database's mailbox with the same id, is read afresh.
_folder_cache: dict[int, tuple[float, tuple, list]] = {}
_folder_lock = threading.Lock()


def forget_folders(mailbox_id: int) -> None:
    """Drop the folders kept for a mailbox (it was deleted)."""
    with _folder_lock:
        _folder_cache.pop(mailbox_id, None)


def _require_own_rules(p: Principal, mailbox: Mailbox) -> None:
    """Folder rules belong to the mailbox's user: they (or someone who may write their
    mailbox) manage them; queues have none."""
    authz.require(p, "write", mailbox)
    if mailbox.user_id is None:
        raise Invalid(N_("Folder tracking is for users' mailboxes."))


def mailbox_folders(p: Principal, mailbox: Mailbox, *, refresh: bool = False) -> list:
    """The folders under the mailbox's Inbox (``Folder`` objects), read through its
    connector and kept for ten minutes."""
    from server.sync.engine.accounts import account_for
    from server.sync.connectors import incoming
    from server.sync.connectors.base import ConnectorError
    from server.sync.engine.folders import find_inbox, is_under
    _require_own_rules(p, mailbox)
    read_as = (str(db.engine.url), mailbox.email_address, mailbox.server_profile_id,
               mailbox.username)
    with _folder_lock:
        cached = _folder_cache.get(mailbox.id)
    if (cached and not refresh and cached[1] == read_as
            and time.monotonic() - cached[0] < FOLDER_CACHE_SECONDS):
        return cached[2]
    if mailbox.server_profile is None:
        raise Invalid(N_("The mailbox has no email server profile yet."))
    try:
        account = account_for(mailbox, "incoming")
        with incoming(mailbox.server_profile.incoming_protocol)(account) as connector:
            folders = connector.list_folders()
    except ConnectorError as exc:
        raise Invalid(f"The folders could not be read: {exc.message}") from None
    inbox = find_inbox(folders)
    by_key = {f.key: f for f in folders}
    under = sorted((f for f in folders if inbox is not None and f.key != inbox.key
                    and is_under(f, inbox, by_key)), key=lambda f: f.name.casefold())
    with _folder_lock:
        _folder_cache[mailbox.id] = (time.monotonic(), read_as, under)
    return under


def list_rules(p: Principal, mailbox: Mailbox) -> tuple[list[FolderRule], dict]:
    """The mailbox's folder rules and the titles of the records they are regarding."""
    authz.require(p, "read", mailbox)
    rules = db.session.scalars(select(FolderRule).where(FolderRule.mailbox_id == mailbox.id)
                               .order_by(func.lower(FolderRule.folder_name))).all()
    return list(rules), titles(p, regarding_refs(rules))


def find_regarding(p: Principal, kind: str, query: str) -> list:
    """Records of ``kind`` whose title contains ``query`` that ``p`` may append to."""
    rt = RECORD_TYPES.get(kind)
    if rt is None or kind not in REGARDING_COLUMNS:
        raise Invalid(N_("Choose what the folder's email is regarding."), {"regarding_type": "Choose "
                      "an account, contact, lead, opportunity or case."})
    column = getattr(rt.model, rt.title_field)
    return list(db.session.scalars(
        select(rt.model).where(func.lower(cast(column, String)).like(
            f"%{query.strip().lower()[:200]}%"), authz.scope(p, rt.model, "append_to"))
        .order_by(func.lower(cast(column, String))).limit(10)))


def add_rule(p: Principal, mailbox: Mailbox, data: dict) -> FolderRule:
    """Track a folder under the Inbox, optionally regarding a record (chosen by id, or by a
    title that names exactly one record)."""
    _require_own_rules(p, mailbox)
    errors: dict[str, str] = {}
    key = (data.get("folder_key") or "").strip()
    folder = next((f for f in mailbox_folders(p, mailbox) if f.key == key), None)
    if folder is None:
        errors["folder_key"] = N_("Choose a folder under the Inbox.")
    count = db.session.scalar(select(func.count()).select_from(FolderRule).where(
        FolderRule.user_id == mailbox.user_id))
    if count >= FolderRule.MAX_PER_USER:
        raise Invalid(N_("A user can track at most %(count)s folders: remove one first.",
                         count=FolderRule.MAX_PER_USER))
    if folder is not None and db.session.scalar(select(FolderRule.id).where(
            FolderRule.mailbox_id == mailbox.id, FolderRule.folder_key == key)):
        errors["folder_key"] = N_("The folder “%(folder)s” is tracked already.",
                                   folder=folder.name)
    regarding = None
    kind = (data.get("regarding_type") or "").strip()
    record_id = forms.integer(data, "regarding_id", N_("Record"), errors, low=1, high=2**31 - 1)
    query = (data.get("regarding_query") or "").strip()
    if kind and (record_id or query):
        if record_id:
            regarding = authz.get(p, RECORD_TYPES[kind].model, record_id) \
                if kind in REGARDING_COLUMNS else None
        else:
            found = find_regarding(p, kind, query)
            if len(found) == 1:
                regarding = found[0]
            else:
                errors["regarding_query"] = (N_("No record you can link to matches.") if not found
                                             else N_("%(count)s records match: choose one.",
                                                     count=len(found)))
        if regarding is not None:
            authz.require(p, "append_to", regarding)
    forms.check(errors)
    rule = FolderRule(mailbox_id=mailbox.id, user_id=mailbox.user_id, folder_key=key,
                      folder_name=folder.name[:500])
    if regarding is not None:
        rule.set_regarding(kind, regarding.id)
    db.session.add(rule)
    db.session.flush()
    return rule


def add_rules_by_name(p: Principal, mailbox: Mailbox, names) -> tuple[list[str], list[str]]:
    """Folder rules for folders known only by their server names, as an import has them
    (fetchmail's ``folder`` option): the mailbox's folders are not read now, so each rule
    keeps the name and the first sync binds it to the folder of that name under the Inbox
    (``engine.folders`` finds a rule's folder by name when its key is not known). Returns
    (the folders tracked, a sentence for each name that gets no rule, and why)."""
    from server.sync.engine.folders import BY_NAME
    _require_own_rules(p, mailbox)
    made: list[str] = []
    refused: list[str] = []
    have = {r.folder_name.casefold() for r in db.session.scalars(
        select(FolderRule).where(FolderRule.mailbox_id == mailbox.id))}
    count = db.session.scalar(select(func.count()).select_from(FolderRule).where(
        FolderRule.user_id == mailbox.user_id))
    pop3 = mailbox.server_profile is not None and \
        mailbox.server_profile.incoming_protocol == "pop3"
    for raw in names:
        name = _display_name(raw)
        if name.upper() == "INBOX":
            continue  # the Inbox is always read
        if not name or len(name) > 500:
            refused.append(f'"{raw}" is not a folder name')
        elif pop3:
            refused.append(f'"{raw}": POP3 reads the Inbox only')
        elif not name.upper().startswith("INBOX/"):
            refused.append(f'"{raw}" is not under the Inbox (only folders under the Inbox '
                           "are tracked)")
        elif name.casefold() in have:
            continue
        elif count >= FolderRule.MAX_PER_USER:
            refused.append(f'"{raw}": a user can track at most {FolderRule.MAX_PER_USER} '
                           "folders")
        else:
            db.session.add(FolderRule(mailbox_id=mailbox.id, user_id=mailbox.user_id,
                                      folder_key=f"{BY_NAME}{name}"[:500], folder_name=name))
            have.add(name.casefold())
            made.append(name)
            count += 1
    db.session.flush()
    return made, refused


def _display_name(raw: str) -> str:
    """A server's folder name as the engine shows it: "/" between levels, the Inbox spelled
    INBOX (``INBOX.Deals``, a server with "." between levels, is ``INBOX/Deals``)."""
    name = (raw or "").strip()
    head, sep, rest = name.partition("/" if "/" in name else ".")
    if head.upper() != "INBOX":
        return name
    return f"INBOX/{rest.replace('.', '/') if sep == '.' else rest}" if sep else "INBOX"


def _rule(p: Principal, rule_id: int) -> FolderRule:
    rule = db.session.get(FolderRule, rule_id)
    if rule is None:
        raise NotFound()
    mailbox = db.session.get(Mailbox, rule.mailbox_id)
    _require_own_rules(p, mailbox)
    return rule


def delete_rule(p: Principal, rule_id: int) -> FolderRule:
    rule = _rule(p, rule_id)
    db.session.delete(rule)
    db.session.flush()
    return rule


def set_rule_enabled(p: Principal, rule_id: int, enabled: bool) -> FolderRule:
    rule = _rule(p, rule_id)
    rule.enabled = enabled
    rule.disabled_reason = None if enabled else N_("Turned off by its owner.")
    db.session.flush()
    return rule
