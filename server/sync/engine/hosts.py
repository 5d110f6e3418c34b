"""Which mail servers and Maildir stores the server may reach for email server profiles.

Administrators name servers freely, so without a rule a profile (and its Test & Enable)
could make this server knock on its own loopback services or on link-local addresses such
as a cloud metadata endpoint. The rule: a server is allowed unless it is, or resolves to, a
loopback, link-local, unspecified or multicast address; the organization's setting
``mail_server_allowed_hosts`` (host names, addresses or networks, separated by commas, spaces
or lines) allows such ones explicitly (the test suite's peers run on loopback). A Maildir
store must lie inside ``REGARDING_MAILDIR_ROOT`` (default ``instance/maildir``).

Profiles are checked when saved (:func:`profile_errors`) and again where connections are
made (:func:`check_server`, :func:`check_maildir`, from ``engine.accounts``), so a setting
changed later, or a name that resolves differently later, is caught before connecting.
Refusals read like any failure to connect, so a profile is no port scanner.
"""
from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from flask import current_app

from server.crm.allowed_hosts import Network, parse_allowed
from server.crm.models import Organization
from server.db import db
from server.sync.connectors.base import ConnectorError

def _allowed_setting() -> tuple[frozenset[str], tuple[Network, ...]]:
    org = db.session.get(Organization, 1)
    try:
        return parse_allowed(org.mail_server_allowed_hosts if org else "")
    except ValueError:  # saved through the settings page, which checks it: nothing allowed
        return frozenset(), ()


def _special(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return (address.is_loopback or address.is_link_local or address.is_unspecified
            or address.is_multicast)


def refusal(host: str, addresses: list[str]) -> bool:
    """Whether the setting refuses ``host`` that has ``addresses`` (empty: not resolved)."""
    names, networks = _allowed_setting()
    host = host.strip().strip("[]").lower().rstrip(".")
    if host in names:
        return False
    try:
        addresses = [str(ipaddress.ip_address(host))]  # a literal address is itself
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            addresses = addresses or ["127.0.0.1"]
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if _special(address) and not any(address in net for net in networks):
            return True
    return False


def could_not_connect(host: str, port: int | None) -> ConnectorError:
    where = f"{host}:{port}" if port else host
    return ConnectorError("could_not_connect", f"Could not connect to {where}.",
                          severity="mailbox", retry_after=300)


def check_server(host: str | None, port: int | None) -> None:
    """Before connecting: ConnectorError ``could_not_connect`` for a refused server. A name
    that does not resolve is left to the connector (it fails the same way)."""
    if not host:
        return
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port or 0, type=socket.SOCK_STREAM)
        addresses = [info[4][0] for info in infos]
    except (socket.gaierror, UnicodeError, OSError):
        addresses = []
    if refusal(host, addresses):
        raise could_not_connect(host, port)


def maildir_base() -> Path:
    configured = current_app.config.get("REGARDING_MAILDIR_ROOT")
    return Path(configured or Path(current_app.instance_path) / "maildir").resolve()


def maildir_inside(root: str) -> bool:
    base = maildir_base()
    return (base / root).resolve().is_relative_to(base)


def check_maildir(root: str) -> None:
    """Before opening a Maildir store: inside the configured directory, or an error."""
    if not maildir_inside(root):
        raise ConnectorError("maildir_not_allowed", "This Maildir store is outside the "
                             "directory Maildir stores may be in (REGARDING_MAILDIR_ROOT).",
                             severity="auth")


def profile_errors(values: dict) -> dict[str, str]:
    """Form errors for a profile's servers and Maildir store, when it is saved. Only what
    is known without a DNS lookup (literal addresses, localhost, listed names); the
    connection check resolves names."""
    errors = {}
    for side in ("incoming", "outgoing"):
        host = values.get(f"{side}_host")
        if host and refusal(host, []):
            errors[f"{side}_host"] = ("This server is not allowed: loopback and link-local "
                                      "addresses need the organization's allowed mail servers "
                                      "setting.")
    root = values.get("maildir_root")
    if root and not maildir_inside(root):
        errors["maildir_root"] = (f"A Maildir store must be inside {maildir_base()} "
                                  "(REGARDING_MAILDIR_ROOT).")
    return errors
