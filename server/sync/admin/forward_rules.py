"""Rule deployment: the CRM puts the forwarding rule on a user's own mail server, so each
email they receive also reaches the forward mailbox and is tracked for them there, without
anything to set up in their mail client (Dynamics' "deploy rules" for forward mailboxes).

Which server, and how, follows the mailbox's email server profile: its incoming protocol's
``ForwardRules`` class (``connectors.forward_rules``: ManageSieve beside IMAP and POP3),
signed in as its incoming server is. The rule's state (deployed, removed, failed, with what
the server said) is kept on the mailbox for its page; a user's redirected copies are
tracked only while their rule is "deployed". Deploying, checking and removing need write
on the mailbox (its owner, or a mailbox administrator). Callers commit.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from server.db import db, utcnow
from server.errors import Invalid
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal
from server.sync import connectors
from server.sync.connectors.base import ConnectorError, ForwardRules
from server.sync.engine import hosts
from server.sync.engine.accounts import account_for
from server.sync.models import Mailbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleResult:
    ok: bool
    message: str


def forward_mailbox_for(mailbox: Mailbox) -> Mailbox | None:
    """The forward mailbox a user's rule sends to: one on the same server profile if there
    is one, else the oldest."""
    boxes = db.session.scalars(select(Mailbox).where(Mailbox.is_forward_mailbox.is_(True))
                               .order_by(Mailbox.id)).all()
    same = [b for b in boxes if b.server_profile_id == mailbox.server_profile_id]
    return (same or list(boxes) or [None])[0]


def _rules_class(mailbox: Mailbox) -> type[ForwardRules]:
    if mailbox.user_id is None or mailbox.is_forward_mailbox:
        raise Invalid(N_("Forwarding rules are for users' mailboxes."))
    if mailbox.incoming_method != "forward_mailbox":
        raise Invalid(N_("Set the mailbox's incoming email to the forward mailbox first: the "
                         "rule forwards to it."))
    profile = mailbox.server_profile
    if profile is None:
        raise Invalid(N_("The mailbox has no email server profile: the rule goes on the server "
                         "it names."))
    cls = connectors.forward_rules(profile.incoming_protocol)
    if cls is None:
        raise Invalid(N_("The CRM cannot put rules on %(protocol)s servers: set up forwarding "
                         "in the mail server or client.", protocol=profile.incoming_protocol))
    return cls


def _open(mailbox: Mailbox, cls: type[ForwardRules]) -> ForwardRules:
    account = account_for(mailbox, "incoming")
    port = (mailbox.server_profile.settings or {}).get("managesieve_port")
    hosts.check_server(account.host, int(port) if port else None)
    return cls(account)


def _record(mailbox: Mailbox, status: str, message: str) -> RuleResult:
    mailbox.forward_rule_status = status
    mailbox.forward_rule_message = message
    mailbox.forward_rule_on = utcnow()
    db.session.flush()
    log.info("forwarding rule of mailbox %s: %s", mailbox.id, status)
    return RuleResult(status != "failed", message)


def deploy_rule(p: Principal, mailbox: Mailbox) -> RuleResult:
    """Put the rule on the user's server (replacing the CRM's earlier one) and read it back."""
    authz.require(p, "write", mailbox)
    cls = _rules_class(mailbox)
    target = forward_mailbox_for(mailbox)
    if target is None:
        raise Invalid(N_("There is no forward mailbox yet: create one first."))
    try:
        with _open(mailbox, cls) as rules:
            rules.deploy(target.email_address)
            found = rules.forwards_to()
    except ConnectorError as exc:
        return _record(mailbox, "failed", N_("The rule could not be deployed: %(problem)s",
                                                  problem=exc.message))
    if (found or "").lower() != target.email_address.lower():
        return _record(mailbox, "failed", N_("The server took the rule but does not show it "
                                             "afterwards: check its Sieve settings."))
    return _record(mailbox, "deployed", N_(
        "Every email %(address)s receives is also sent to the forward mailbox %(forward)s.",
        address=mailbox.email_address, forward=target.email_address))


def remove_rule(p: Principal, mailbox: Mailbox) -> RuleResult:
    """Take the CRM's rule off the user's server (their own rules stay)."""
    authz.require(p, "write", mailbox)
    cls = _rules_class(mailbox) if mailbox.incoming_method == "forward_mailbox" else \
        connectors.forward_rules(mailbox.server_profile.incoming_protocol
                                 if mailbox.server_profile else "")
    if cls is None:
        raise Invalid(N_("The CRM has no way to reach this mailbox's server for rules."))
    try:
        with _open(mailbox, cls) as rules:
            removed = rules.remove()
    except ConnectorError as exc:
        return _record(mailbox, "failed", N_("The rule could not be removed: %(problem)s",
                                                  problem=exc.message))
    return _record(mailbox, "removed", N_("The forwarding rule was removed.") if removed else
                   N_("There was no forwarding rule of the CRM on the server."))


def check_rule(p: Principal, mailbox: Mailbox) -> RuleResult:
    """Read the rule back from the server and record what is there."""
    authz.require(p, "write", mailbox)
    cls = _rules_class(mailbox)
    try:
        with _open(mailbox, cls) as rules:
            found = rules.forwards_to()
    except ConnectorError as exc:
        return _record(mailbox, "failed", N_("The rule could not be read: %(problem)s",
                                                  problem=exc.message))
    if found is None:
        return _record(mailbox, "removed", N_("There is no forwarding rule of the CRM on the "
                                              "server."))
    return _record(mailbox, "deployed", N_("The server forwards a copy of each email to "
                                           "%(address)s.", address=found))
