"""Inbox message rules for the Graph fake (``/users/{id}/mailFolders/inbox/messageRules``:
list, create, get, update, delete, as Microsoft documents them), and what Exchange does with
an enabled rule's ``forwardAsAttachmentTo`` when mail arrives in the Inbox: a new message
from the mailbox's owner to each target, "FW: " and the subject, the original attached as
message/rfc822. Held to Graph's schema by tests/sync/graph/test_forward_rules_graph.py."""
from __future__ import annotations

import itertools
import json
import re
from email import policy
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from datetime import datetime, timezone
from urllib.parse import unquote

RULE_PROPERTIES = {"id", "displayName", "sequence", "isEnabled", "hasError", "isReadOnly",
                   "actions", "conditions", "exceptions"}
WRITABLE = {"displayName", "sequence", "isEnabled", "actions", "conditions", "exceptions"}
_ids = itertools.count(1)


def _error(status: int, code: str, message: str):
    return status, {}, {"error": {"code": code, "message": message}}


def handle(box, method: str, rest: str, data: bytes):
    """A request under ``/mailFolders/inbox/messageRules`` -> (status, headers, body)."""
    match = re.match(r"^/mailFolders/inbox/messageRules(?:/([^/]+))?$", rest, re.IGNORECASE)
    if not match:
        return _error(400, "BadRequest", f"Resource not found for the segment '{rest}'.")
    rule_id = unquote(match.group(1)) if match.group(1) else None
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        return _error(400, "BadRequest", "Invalid JSON.")
    unknown = set(body) - WRITABLE if method in ("POST", "PATCH") else set()
    if unknown:
        return _error(400, "RequestBodyRead", f"The property '{sorted(unknown)[0]}' does not "
                      "exist on type 'microsoft.graph.messageRule'.")
    if rule_id is None and method == "GET":
        return 200, {}, {"value": sorted(box.rules.values(), key=lambda r: r["sequence"])}
    if rule_id is None and method == "POST":
        if not body.get("displayName") or "sequence" not in body:
            return _error(400, "ErrorInvalidRequest", "displayName and sequence are required.")
        rule = {"id": f"AQAAAJ{next(_ids):06d}=", "hasError": False, "isReadOnly": False,
                "isEnabled": True, "conditions": {}, "exceptions": {}, **body}
        box.rules[rule["id"]] = rule
        return 201, {}, rule
    rule = box.rules.get(rule_id) if rule_id else None
    if rule is None:
        return _error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    if method == "GET":
        return 200, {}, rule
    if method == "PATCH":
        rule.update(body)
        return 200, {}, rule
    if method == "DELETE":
        del box.rules[rule_id]
        return 204, {}, None
    return _error(405, "ErrorInvalidRequest", "The OData request is not supported.")


def forwards(box, raw: bytes) -> list[tuple[str, bytes]]:
    """(target address, forward) for each enabled rule forwarding as an attachment."""
    out = []
    head = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    for rule in sorted(box.rules.values(), key=lambda r: r["sequence"]):
        if not rule.get("isEnabled", True):
            continue
        actions = rule.get("actions") or {}
        for target in actions.get("forwardAsAttachmentTo") or []:
            address = (target.get("emailAddress") or {}).get("address")
            if address:
                out.append((address.lower(), _forward(box.address, address, head, raw)))
        if actions.get("stopProcessingRules"):
            break
    return out


def _forward(sender: str, target: str, head, raw: bytes) -> bytes:
    lines = [f"From: {sender}", f"To: {target}", f"Subject: FW: {head.get('Subject', '')}",
             f"Date: {format_datetime(datetime.now(timezone.utc))}",
             f"Message-ID: {make_msgid(domain='graph.example')}", "MIME-Version: 1.0",
             'Content-Type: multipart/mixed; boundary="fwd-boundary"', "", "--fwd-boundary",
             "Content-Type: text/plain; charset=utf-8", "", "", "--fwd-boundary",
             "Content-Type: message/rfc822", "", ""]
    return ("\r\n".join(lines)).encode() + raw + b"\r\n--fwd-boundary--\r\n"
