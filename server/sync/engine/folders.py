"""Folders: which folders of a mailbox the engine evaluates, and keeping folder tracking rules
in step with the folders on the server.

The engine looks at the Inbox, Sent Items (when the organization tracks sent items) and
every enabled tracked folder. Sent Items is the folder the mailbox names in its settings,
else the one the server marks as Sent (IMAP SPECIAL-USE, Exchange's well-known folder),
else one with a name mail clients give it (``find_sent``): many servers mark none.

A tracked folder's rule is keyed by the folder's stable key (the connector's
``Folder.key``), so:

* a rename keeps the rule: the key is found under a new name and the rule takes that name;
* a folder moved out of the Inbox disables its rule, with a reason and an information
  alert for the owner; moving it back under the Inbox turns the rule on again;
* a folder whose key is gone keeps its rule, marked "folder not found" (what was tracked
  from it stays tracked); a folder of the same name under the Inbox whose key no rule
  holds takes the rule over (a folder deleted and made again, or a server whose keys
  changed, e.g. a UIDVALIDITY-based key after a restore).

Nothing here talks to a server: ``plan_folders`` works on the connector's folder list.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from server.i18n import N_
from server.sync.engine import alerts
from server.sync.connectors.base import Folder
from server.sync.models import FolderRule, Mailbox
from server.sync.mail.decision import Folder as DecisionFolder
from server.sync.mail.decision import FolderRole, Regarding

INBOX = "INBOX"
# The start of the reason a rule gets when its folder leaves the Inbox: a rule disabled for
# this reason (and only this one) is turned on again when the folder comes back.
MOVED_OUT = "The folder was moved out of the Inbox"
NOT_FOUND = "Folder not found"
# The key of a folder rule known by its name only (an import): bound by name at a sync.
BY_NAME = "name:"


@dataclass(frozen=True)
class FolderInfo:
    """One folder the engine evaluates: the connector's folder, its role and, for a tracked
    folder, its rule and what the rule's mail is regarding."""

    folder: Folder
    role: FolderRole
    rule_id: int | None = None
    regarding: Regarding | None = None

    @property
    def key(self) -> str:
        return self.folder.key

    @property
    def name(self) -> str:
        return self.folder.name

    def for_decision(self) -> DecisionFolder:
        """The folder as the tracking rules see it."""
        return DecisionFolder(role=self.role, name=self.name, regarding=self.regarding)


@dataclass
class FolderPlan:
    evaluate: list[FolderInfo]
    notes: list[str] = field(default_factory=list)  # what changed in the rules, for the log


def find_inbox(folders: Iterable[Folder]) -> Folder | None:
    folders = list(folders)
    return next((f for f in folders if f.role == "inbox"), None) or next(
        (f for f in folders if f.name.upper() == INBOX), None)


# The names mail clients and servers give the Sent folder (casefolded), in order of
# preference; looked for at the top level and under the Inbox ("INBOX.Sent").
SENT_NAMES = tuple(name.casefold() for name in (
    "Sent", "Sent Items", "Sent Messages", "Sent Mail", "Sent-Mail", "Sent Objects",
    "Gesendete Elemente", "Gesendete Objekte", "Gesendet", "Éléments envoyés", "Envoyés",
    "Messages envoyés", "Elementos enviados", "Enviados", "Posta inviata", "Inviata",
    "Itens enviados", "Verzonden items", "Verzonden", "Odeslaná pošta", "Odeslané",
    "Skickat", "Skickade objekt", "Sendt", "Sendte elementer", "Lähetetyt", "Poslano",
    "Poslane", "Elküldött elemek", "Elküldött", "Wysłane", "Elementy wysłane",
    "Отправленные", "Надіслані", "Trimise", "Gönderilmiş Öğeler", "Απεσταλμένα",
    "已发送邮件", "已发送", "寄件備份", "送信済みアイテム", "送信済み", "보낸 편지함"))


def find_sent(folders: Iterable[Folder], named: str | None = None) -> Folder | None:
    """The mailbox's Sent folder: the one it names (``Mailbox.sent_folder``, matched by
    its full name, any letter case), else the one the server marks (role "sent"), else the
    first folder with a name in ``SENT_NAMES`` at the top level or under the Inbox. A
    named folder the server does not have finds nothing: the mailbox asked for it."""
    folders = list(folders)
    if named and named.strip():
        wanted = named.strip().replace(".", "/").casefold()
        return next((f for f in folders if f.name.casefold() in (
            named.strip().casefold(), wanted)), None)
    marked = next((f for f in folders if f.role == "sent"), None)
    if marked is not None:
        return marked
    top = {f.name.casefold(): f for f in folders if "/" not in f.name}
    under_inbox = {f.name.partition("/")[2].casefold(): f for f in folders
                   if f.name.count("/") == 1 and f.name.partition("/")[0].upper() == INBOX}
    return next((found for name in SENT_NAMES
                 if (found := top.get(name) or under_inbox.get(name)) is not None), None)


def is_under(folder: Folder, parent: Folder, by_key: dict[str, Folder]) -> bool:
    """Whether ``folder`` is somewhere below ``parent`` (not ``parent`` itself): by the parent
    keys the connector gives, else by the "/"-separated name."""
    seen: set[str] = set()
    current = folder
    while current.parent_key and current.parent_key not in seen:
        if current.parent_key == parent.key:
            return True
        seen.add(current.parent_key)
        current = by_key.get(current.parent_key)
        if current is None:
            break
    head, sep, _ = folder.name.partition("/")
    return bool(sep) and head.casefold() == parent.name.casefold() and folder.key != parent.key


def _rebind_by_name(rule: FolderRule, by_name: dict[str, Folder], claimed: set[str],
                    inbox: Folder | None, by_key: dict[str, Folder]) -> Folder | None:
    candidate = by_name.get(rule.folder_name.casefold())
    if candidate is None or candidate.key in claimed:
        return None
    if inbox is None or not is_under(candidate, inbox, by_key):
        return None
    claimed.discard(rule.folder_key)
    claimed.add(candidate.key)
    rule.folder_key = candidate.key
    return candidate


def plan_folders(mailbox: Mailbox, folders: Sequence[Folder], rules: Sequence[FolderRule], *,
                 track_sent: bool) -> FolderPlan:
    """The folders to evaluate this run, updating ``rules`` (names, enabled, reasons) as the
    server's folders changed. The caller commits."""
    by_key = {f.key: f for f in folders}
    by_name = {f.name.casefold(): f for f in folders}
    inbox = find_inbox(folders)
    plan = FolderPlan(evaluate=[])
    taken: set[str] = set()
    if inbox is not None:
        plan.evaluate.append(FolderInfo(inbox, FolderRole.INBOX))
        taken.add(inbox.key)
    sent = find_sent(folders, mailbox.sent_folder)
    if track_sent and sent is not None and sent.key not in taken:
        plan.evaluate.append(FolderInfo(sent, FolderRole.SENT))
        taken.add(sent.key)
    claimed = {rule.folder_key for rule in rules}
    found_again = False
    for rule in sorted(rules, key=lambda r: r.id or 0):
        folder = by_key.get(rule.folder_key)
        if folder is None:
            first = rule.folder_key.startswith(BY_NAME)  # made by an import, never bound yet
            folder = _rebind_by_name(rule, by_name, claimed, inbox, by_key)
            if folder is not None:
                plan.notes.append(f'The tracked folder "{rule.folder_name}" was '
                                  f'{"found by its name" if first else "found again"}.')
        if folder is None:
            if not (rule.disabled_reason or "").startswith((NOT_FOUND, MOVED_OUT)):
                rule.disabled_reason = (f'{NOT_FOUND}: "{rule.folder_name}" is no longer in this '
                                        "mailbox. What was tracked from it stays tracked.")
                plan.notes.append(f'The tracked folder "{rule.folder_name}" was not found.')
                if rule.enabled:
                    alerts.raise_alert(
                        "warning", "folder_rule_not_found",
                        N_('The tracked folder "%(folder)s" is no longer in this mailbox '
                           "(deleted, or renamed where it cannot be found), so mail filed into it "
                           "is not tracked. Create it again under the Inbox, or change the rule.")
                        % {"folder": rule.folder_name},
                        mailbox, user=rule.user_id)
            continue
        found_again |= (rule.disabled_reason or "").startswith(NOT_FOUND)
        if folder.name != rule.folder_name:
            plan.notes.append(f'The tracked folder "{rule.folder_name}" is now "{folder.name}".')
            old_name, rule.folder_name = rule.folder_name, folder.name
        else:
            old_name = rule.folder_name
        if inbox is None or not is_under(folder, inbox, by_key):
            if rule.enabled:
                _disable_moved_out(mailbox, rule, old_name, folder)
                plan.notes.append(f'The tracked folder "{folder.name}" left the Inbox; its rule '
                                  "was turned off.")
            continue
        if not rule.enabled:
            if not (rule.disabled_reason or "").startswith(MOVED_OUT):
                continue  # turned off by a person: stays off
            rule.enabled = True
            plan.notes.append(f'The tracked folder "{folder.name}" is back under the Inbox; its '
                              "rule was turned on again.")
            alerts.clear("folder_rule_disabled", mailbox)
        rule.disabled_reason = None
        if folder.key in taken:
            continue
        taken.add(folder.key)
        plan.evaluate.append(FolderInfo(folder, FolderRole.TRACKED, rule.id, rule.regarding_ref))
    if found_again and not any((r.disabled_reason or "").startswith(NOT_FOUND) for r in rules):
        alerts.clear("folder_rule_not_found", mailbox)
    return plan


def _disable_moved_out(mailbox: Mailbox, rule: FolderRule, old_name: str, folder: Folder) -> None:
    rule.enabled = False
    rule.disabled_reason = (f'{MOVED_OUT} (it is now "{folder.name}"), so mail in it is no '
                            "longer tracked. Move it back under the Inbox to track it again; "
                            "what was tracked from it stays tracked.")
    alerts.raise_alert(
        "information", "folder_rule_disabled",
        N_('The tracked folder "%(folder)s" was moved out of the Inbox (it is now '
           '"%(now)s"), so its folder tracking rule was turned off. Move the folder back '
           "under the Inbox to track its mail again.") % {"folder": old_name, "now": folder.name},
        mailbox, user=rule.user_id)
