"""Sending through Microsoft Graph (``GraphSender``): a draft made from the MIME message,
its large attachments uploaded (``graph_attachments``), Bcc recipients added, then ``send``;
Test & Enable's check that the mailbox may send."""
from __future__ import annotations

import base64
import json
from urllib.parse import quote

from server.sync.connectors.base import Account, AssignsMessageIds, ConnectorError, Sender
from server.sync.connectors.graph_attachments import split_large, upload
from server.sync.connectors.graph_client import GraphSession

MIME_LIMIT = 3_500_000  # a MIME draft above this is refused by Graph's 4 MB request limit


def _addresses(draft: dict) -> set[str]:
    out = set()
    for field in ("toRecipients", "ccRecipients", "bccRecipients"):
        for entry in draft.get(field) or []:
            address = ((entry or {}).get("emailAddress") or {}).get("address")
            if address:
                out.add(address.lower())
    return out


def _token_claims(token: str | None) -> dict:
    """The claims of a JWT access token, read without checking its signature: only to tell
    an admin which permission is missing (Graph itself checks the token)."""
    try:
        payload = (token or "").split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


class GraphSender(GraphSession, Sender, AssignsMessageIds):
    """Sends the CRM's email through Graph: a draft made from the MIME message (its
    attachments included; those over 3 MB are uploaded to the draft through upload sessions,
    ``graph_attachments``), Bcc recipients added, then ``send``; Exchange keeps the copy in
    Sent Items. ``internet_message_ids`` maps each Message-ID we gave to the one Exchange
    used (they are the same unless Exchange rewrote it)."""

    def __init__(self, account: Account):
        super().__init__(account)
        self.internet_message_ids: dict[str, str] = {}
        self.last_internet_message_id: str | None = None

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> dict:
        http = self.client
        raw, large = split_large(raw)  # attached through upload sessions, after the draft
        if len(raw) > MIME_LIMIT:
            raise ConnectorError("message_too_large", f"The email is {len(raw) // 1_000_000} MB "
                                 "without its attachments over 3 MB; Microsoft Graph takes MIME "
                                 "messages up to 4 MB. Make it smaller.", severity="message")
        what = f"sending from {self.account.address}"
        reply = http.call("POST", f"{http.user}/messages", data=base64.b64encode(raw), what=what,
                          headers={"Content-Type": "text/plain"})
        if not reply.ok:
            raise http.error(reply, what, scope="send")
        draft = reply.json()
        draft_id = draft.get("id")
        if not draft_id:
            raise ConnectorError("graph_bad_response", "Microsoft Graph made no draft.",
                                 severity="mailbox", retry_after=60)
        try:
            for attachment in large:
                upload(http, draft_id, attachment, what)
            missing = [r for r in recipients if r.lower() not in _addresses(draft)]
            if missing:  # Bcc recipients are not in the MIME headers
                bcc = list(draft.get("bccRecipients") or []) + \
                    [{"emailAddress": {"address": r}} for r in missing]
                patched = http.call("PATCH", f"{http.user}/messages/{quote(draft_id, safe='')}",
                                    json_body={"bccRecipients": bcc}, what=what)
                if not patched.ok:
                    raise http.error(patched, what, scope="send")
            sent = http.call("POST", f"{http.user}/messages/{quote(draft_id, safe='')}/send",
                             what=what, headers={"Content-Length": "0"})
            if not sent.ok:
                raise http.error(sent, what, scope="send")
        except ConnectorError:
            self._discard(draft_id)
            raise
        ours = _message_id(raw)
        theirs = str(draft.get("internetMessageId") or "") or ours
        self.last_internet_message_id = theirs
        if ours:
            self.internet_message_ids[ours] = theirs
        return {}

    def _discard(self, draft_id: str) -> None:
        try:
            self.client.call("DELETE", f"{self.client.user}/messages/{quote(draft_id, safe='')}",
                             what="removing an unsent draft")
        except ConnectorError:
            pass

    def verify(self, sender: str, recipient: str) -> None:
        """Test & Enable: the mailbox is reachable for sending (its Drafts folder) and the
        token carries the send permission (Mail.Send as an application role, or delegated)."""
        http = self.client
        what = f"checking {self.account.address} for sending"
        reply = http.call("GET", f"{http.user}/mailFolders/drafts?$select=id", what=what)
        if not reply.ok:
            raise http.error(reply, what, scope="mailbox" if reply.status == 404 else "send")
        claims = _token_claims(http.token)
        granted = set(claims.get("roles") or []) | set(str(claims.get("scp") or "").split())
        if claims and not granted & {"Mail.Send", "Mail.Send.Shared"}:
            raise ConnectorError(
                "send_denied", f"The access token for {self.account.address} does not carry "
                "the Mail.Send permission. Grant Mail.Send with admin consent to the server "
                "profile's app in Microsoft Entra ID (or connect the mailbox again from the "
                "add-in).", severity="auth")


def _message_id(raw: bytes) -> str | None:
    from email.parser import BytesHeaderParser
    from email import policy
    value = BytesHeaderParser(policy=policy.compat32).parsebytes(raw).get("Message-ID")
    return str(value).strip() if value else None
