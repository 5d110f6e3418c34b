"""The small pieces of Microsoft Graph's wire format the Graph fakes share (``graph`` for
mail, ``graph_items`` for events, contacts and to-do tasks): times, base64url state tokens
and error bodies as Graph words them."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: dict | bytes) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64url(text: str) -> dict | None:
    try:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError):
        return None


def _error(status: int, code: str, message: str, headers: dict | None = None):
    return status, dict(headers or {}), {"error": {"code": code, "message": message,
                                                   "innerError": {"date": _iso(_now())}}}
