"""Protocol connectors: one module per protocol behind the interface in ``base``; the
registry maps a server profile's protocol to its connector class. Only these modules import
protocol libraries (imapclient, poplib, smtplib, msal/HTTP for Graph, exchangelib)."""
from __future__ import annotations

import importlib

from server.sync.connectors.base import Connector, Sender

_MODULES = {"imap": "imap", "pop3": "pop3", "maildir": "maildir", "smtp": "smtp",
            "graph": "graph", "ews": "ews"}


def incoming(protocol: str) -> type[Connector]:
    """The connector class that reads mail for ``protocol``."""
    module = importlib.import_module(f"server.sync.connectors.{_MODULES[protocol]}")
    return module.CONNECTOR


def outgoing(protocol: str) -> type[Sender]:
    """The sender class that sends mail for ``protocol``."""
    module = importlib.import_module(f"server.sync.connectors.{_MODULES[protocol]}")
    return module.SENDER
