"""Large attachments of outgoing mail through Microsoft Graph.

A draft made from MIME must fit Graph's 4 MB request limit, and Microsoft documents that a
file over 3 MB is attached through an upload session ("Attach large files to Outlook
messages or events"): ``POST .../messages/{id}/attachments/createUploadSession`` with an
``AttachmentItem`` answers an ``uploadUrl``; the file then goes up in byte ranges, in order,
with ``PUT`` (``Content-Range: bytes {start}-{end}/{total}``, no ``Authorization`` header:
the URL carries its own authorization), each answered with the ``nextExpectedRanges`` where
the next range starts, the last with ``201 Created``.

``split_large`` takes the large attachments out of a MIME message (the draft is made from
the rest, headers and Message-ID unchanged); ``upload`` attaches one to the draft. Ranges
are ``RANGE_SIZE`` bytes (a multiple of 320 KiB, under 4 MiB, the sizes upload sessions
take); a range the service failed to take (5xx, 429, a dropped connection) is sent again
after ``Retry-After`` or a short back-off, from where the service says it expects the next
byte.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from urllib.parse import quote, urlsplit

import requests

from server.sync.connectors.base import ConnectorError
from server.sync.connectors.graph_client import GraphClient, retry_after

LARGE_ATTACHMENT = 3_000_000  # bytes: above this an attachment goes through an upload session
RANGE_UNIT = 320 * 1024
RANGE_SIZE = 12 * RANGE_UNIT  # 3,932,160 bytes: a multiple of 320 KiB under 4 MiB
RANGE_ATTEMPTS = 5  # sends of one range before the email is given up (for a later retry)
MAX_RANGE_WAIT = 30.0


@dataclass
class LargeAttachment:
    name: str
    content_type: str
    data: bytes
    inline: bool = False
    content_id: str | None = None

    def item(self) -> dict:
        """The ``AttachmentItem`` of createUploadSession."""
        item = {"attachmentType": "file", "name": self.name, "size": len(self.data),
                "contentType": self.content_type, "isInline": self.inline}
        if self.content_id:
            item["contentId"] = self.content_id
        return item


def split_large(raw: bytes) -> tuple[bytes, list[LargeAttachment]]:
    """(the MIME message without its attachments over ``LARGE_ATTACHMENT``, those
    attachments); the message unchanged when it has none."""
    message = message_from_bytes(raw, policy=policy.default)
    large: list[LargeAttachment] = []
    for parent in [p for p in message.walk() if p.is_multipart()]:
        parts = parent.get_payload()
        for part in list(parts):
            if part.is_multipart() or part.get_filename() is None:
                continue
            data = part.get_payload(decode=True) or b""
            if len(data) <= LARGE_ATTACHMENT:
                continue
            content_id = (part.get("Content-ID") or "").strip().strip("<>") or None
            large.append(LargeAttachment(
                name=part.get_filename(), content_type=part.get_content_type(), data=data,
                inline=part.get_content_disposition() == "inline", content_id=content_id))
            parts.remove(part)
    if not large:
        return raw, []
    return message.as_bytes(policy=policy.default.clone(linesep="\r\n")), large


def upload(client: GraphClient, draft_id: str, attachment: LargeAttachment, what: str) -> None:
    """Attach ``attachment`` to the draft through an upload session (``client``: the
    sender's GraphClient)."""
    path = f"{client.user}/messages/{quote(draft_id, safe='')}/attachments/createUploadSession"
    reply = client.call("POST", path, json_body={"AttachmentItem": attachment.item()}, what=what)
    if not reply.ok:
        raise client.error(reply, what, scope="send")
    url = str(reply.json().get("uploadUrl") or "")
    if urlsplit(url).scheme != "https":
        raise ConnectorError("graph_bad_response", "Microsoft Graph gave no https upload "
                             f"address while {what}.", severity="mailbox", retry_after=60)
    data, total, start = attachment.data, len(attachment.data), 0
    failures = 0
    while start < total:
        end = min(start + RANGE_SIZE, total) - 1
        status, headers, body = _put(client, url, data[start:end + 1], start, end, total, what)
        if status == 201:
            return
        if status == 200:
            start = _next_start(body, end + 1, total)
            failures = 0
            continue
        failures += 1
        if status not in (None, 429, 500, 502, 503, 504) or failures >= RANGE_ATTEMPTS:
            raise ConnectorError(
                "attachment_upload_failed", f"Microsoft Graph did not take the attachment "
                f"{attachment.name} ({total // 1_000_000} MB) while {what} (HTTP "
                f"{status or 'connection lost'} at byte {start}).", severity="mailbox",
                retry_after=300)
        time.sleep(min(MAX_RANGE_WAIT, retry_after(headers, failures - 1)))
    raise ConnectorError("graph_bad_response", f"Microsoft Graph did not finish the upload of "
                         f"{attachment.name} while {what}.", severity="mailbox", retry_after=60)


def _put(client, url: str, chunk: bytes, start: int, end: int, total: int, what: str):
    """One range: (status, headers, JSON body), status None when the connection failed."""
    try:
        response = client.session.put(
            url, data=chunk, timeout=client.timeout, verify=client.verify,
            allow_redirects=False, headers={"Content-Type": "application/octet-stream",
                                            "Content-Range": f"bytes {start}-{end}/{total}"})
    except (requests.ConnectionError, requests.Timeout):
        return None, {}, {}
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {}
    return response.status_code, dict(response.headers), body if isinstance(body, dict) else {}


def _next_start(body: dict, fallback: int, total: int) -> int:
    """Where the service expects the next byte (``nextExpectedRanges``: ["{start}"] or
    ["{start}-"] for attachments)."""
    ranges = body.get("nextExpectedRanges") or body.get("NextExpectedRanges") or []
    try:
        start = int(str(ranges[0]).split("-", 1)[0])
    except (IndexError, ValueError):
        return fallback
    return start if 0 <= start <= total else fallback

