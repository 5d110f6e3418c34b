"""The organization's setting of mail servers allowed although they are loopback or
link-local (``Organization.mail_server_allowed_hosts``), parsed (pure). The settings page
checks it with this; ``server.sync.engine.hosts`` applies it."""
from __future__ import annotations

import ipaddress
import re

_SEPARATORS = re.compile(r"[\s,;]+")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*\.?$")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allowed(text: str | None) -> tuple[frozenset[str], tuple[Network, ...]]:
    """The setting as (host names, networks); ValueError naming the first bad entry."""
    names, networks = set(), []
    for entry in _SEPARATORS.split((text or "").strip().lower()):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            if not _HOST_NAME.match(entry):
                raise ValueError(f"{entry[:60]!r} is not a host name, address or network.") from None
            names.add(entry.rstrip("."))
    return frozenset(names), tuple(networks)
