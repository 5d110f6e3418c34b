"""Protocol connectors: one module per protocol behind the interface in ``base``; the
registry maps a server profile's protocol to its connector class (reading mail), its sender
class (sending it) and its item store (appointments, contacts and tasks: ``item_store``).
Each class declares what it can do (``base``'s capability classes) and what its Account needs (``needs``), so nothing outside asks for a protocol by name. Only
these modules import protocol libraries (imapclient, poplib, smtplib, requests for Graph,
exchangelib); a protocol's module is imported when it is first asked for."""
from __future__ import annotations

from server.sync.connectors.base import (Connector, ConnectorError, ForwardRules, ItemStore,
                                         Sender)

DIRECTIONS = ("incoming", "outgoing")


def _classes(protocol: str) -> tuple[type[Connector] | None, type[Sender] | None]:
    """``protocol``'s (connector class, sender class); None where it has none."""
    if protocol == "imap":
        from server.sync.connectors.imap import ImapConnector
        return ImapConnector, None
    if protocol == "pop3":
        from server.sync.connectors.pop3 import Pop3Connector
        return Pop3Connector, None
    if protocol == "smtp":
        from server.sync.connectors.smtp import SmtpSender
        return None, SmtpSender
    if protocol == "maildir":
        from server.sync.connectors.maildir import MaildirConnector, MaildirSender
        return MaildirConnector, MaildirSender
    if protocol == "graph":
        from server.sync.connectors.graph import GraphConnector
        from server.sync.connectors.graph_send import GraphSender
        return GraphConnector, GraphSender
    if protocol == "ews":
        from server.sync.connectors.ews import EwsConnector, EwsSender
        return EwsConnector, EwsSender
    return None, None


def incoming(protocol: str) -> type[Connector]:
    """The connector class that reads mail for ``protocol``."""
    connector = _classes(protocol)[0]
    if connector is None:
        raise _unknown(protocol, "incoming")
    return connector


def outgoing(protocol: str) -> type[Sender]:
    """The sender class that sends mail for ``protocol``."""
    sender = _classes(protocol)[1]
    if sender is None:
        raise _unknown(protocol, "outgoing")
    return sender


def forward_rules(protocol: str) -> type[ForwardRules] | None:
    """The class that puts a forwarding rule on a mailbox's server read with ``protocol``
    (its incoming protocol), or None where the CRM cannot deploy one."""
    if protocol in ("imap", "pop3"):  # the same server's ManageSieve
        from server.sync.connectors.managesieve import ManageSieveRules
        return ManageSieveRules
    if protocol == "graph":  # an Inbox message rule in Exchange Online
        from server.sync.connectors.graph_rules import GraphRules
        return GraphRules
    return None


def for_direction(protocol: str, direction: str) -> type[Connector] | type[Sender]:
    """``protocol``'s connector class (``incoming``) or sender class (``outgoing``)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}")
    return incoming(protocol) if direction == "incoming" else outgoing(protocol)


def item_store(protocol: str) -> type[ItemStore]:
    """The ItemStore class that syncs appointments, contacts and tasks for ``protocol``."""
    if protocol == "caldav":
        from server.sync.connectors.caldav import CalDavStore
        return CalDavStore
    if protocol == "graph":
        from server.sync.connectors.graph_items import GraphItemStore
        return GraphItemStore
    if protocol == "maildir":  # folders of .ics and .vcf files beside the Maildir
        from server.sync.connectors.ics_folder import FolderItemStore
        return FolderItemStore
    if protocol == "ews":
        from server.sync.connectors.ews_items import EwsItemStore
        return EwsItemStore
    raise _unknown(protocol, "appointments, contacts and tasks")


def _unknown(protocol: str, direction: str) -> ConnectorError:
    return ConnectorError("unknown_protocol", f"There is no {direction} protocol {protocol!r}: "
                          "choose another in the server profile.", severity="auth")
