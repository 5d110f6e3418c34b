"""Folders: which folders of a mailbox the engine evaluates, and keeping folder tracking rules
in step with the folders on the server.

The engine looks at the Inbox, Sent Items (when the organization tracks sent items) and
every enabled tracked folder. A tracked folder's rule is keyed by the folder's stable key
(the connector's ``Folder.key``), so:

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
    sent = next((f for f in folders if f.role == "sent"), None)
    if track_sent and sent is not None and sent.key not in taken:
        plan.evaluate.append(FolderInfo(sent, FolderRole.SENT))
        taken.add(sent.key)
    claimed = {rule.folder_key for rule in rules}
    for rule in sorted(rules, key=lambda r: r.id or 0):
        folder = by_key.get(rule.folder_key)
        if folder is None:
            folder = _rebind_by_name(rule, by_name, claimed, inbox, by_key)
            if folder is not None:
                plan.notes.append(f'The tracked folder "{rule.folder_name}" was found again.')
        if folder is None:
            if not (rule.disabled_reason or "").startswith((NOT_FOUND, MOVED_OUT)):
                rule.disabled_reason = (f'{NOT_FOUND}: "{rule.folder_name}" is no longer in this '
                                        "mailbox. What was tracked from it stays tracked.")
                plan.notes.append(f'The tracked folder "{rule.folder_name}" was not found.')
            continue
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
    return plan


def _disable_moved_out(mailbox: Mailbox, rule: FolderRule, old_name: str, folder: Folder) -> None:
    rule.enabled = False
    rule.disabled_reason = (f'{MOVED_OUT} (it is now "{folder.name}"), so mail in it is no '
                            "longer tracked. Move it back under the Inbox to track it again; "
                            "what was tracked from it stays tracked.")
    alerts.raise_alert(
        "information", "folder_rule_disabled",
        f'The tracked folder "{old_name}" was moved out of the Inbox (it is now '
        f'"{folder.name}"), so its folder tracking rule was turned off. Move the folder back '
        "under the Inbox to track its mail again.", mailbox, user=rule.user_id)
