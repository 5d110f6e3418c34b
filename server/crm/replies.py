"""Reply, reply all and forward: the subject with one "RE:" or "FW:" however many prefixes
the original had (in the languages mail clients use), the recipients of each kind, the
quoted original as HTML (all pure), and ``answer`` putting them together from a stored
email into the fields of a new draft (threaded by ``parent_activity_id``, keeping the
original's tracking token and regarding)."""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import datetime

from server.mailkeys import strip_reply_prefixes

MODES = ("reply", "reply_all", "forward")


def base_subject(subject: str | None) -> str:
    """The subject without its leading reply and forward prefixes (all of them, in the
    languages mail clients write them: ``server.mailkeys``)."""
    return strip_reply_prefixes(subject)


def strip_token(subject: str, prefix: str | None) -> str:
    """The subject without tracking tokens of this prefix (a forward starts a new thread)."""
    if not prefix:
        return subject
    return re.sub(rf"\s*{re.escape(prefix)}\d+\b", "", subject).strip()


def _one_line(text: str) -> str:
    return re.sub(r"\s*[\r\n\x85\u2028\u2029]+\s*", " ", text).strip()


def subject_for(mode: str, subject: str | None) -> str:
    return ("FW: " if mode == "forward" else "RE: ") + base_subject(subject)


@dataclass(frozen=True)
class Person:
    name: str
    address: str


def recipients_for(mode: str, *, sender: Person | None, to: list[Person], cc: list[Person],
                   me: set[str]) -> tuple[list[Person], list[Person]]:
    """(To, Cc) of the answer. Reply: the original sender (for an email we sent: its To).
    Reply all: also everyone else on To and Cc, never ourselves, each once. Forward: none."""
    if mode == "forward":
        return [], []
    mine = {a.lower() for a in me}
    ours = sender is not None and sender.address.lower() in mine
    first = list(to) if ours or sender is None else [sender]
    seen: set[str] = set()

    def keep(people: list[Person]) -> list[Person]:
        out = []
        for person in people:
            key = person.address.lower()
            if key in seen or key in mine:
                continue
            seen.add(key)
            out.append(person)
        return out

    reply_to = keep(first)
    if mode == "reply":
        return reply_to, []
    others = keep([p for p in to if p not in first]) if not ours else []
    return reply_to + others, keep(list(cc))


def quoted(mode: str, *, sender: Person | None, sent: datetime | None, subject: str,
           to: list[Person], body_html: str | None, body_text: str | None) -> str:
    """The original below a header, as HTML (``body_html`` was sanitized when stored)."""
    def who(people: list[Person]) -> str:
        return "; ".join(html.escape(f"{p.name} <{p.address}>" if p.name else p.address)
                         for p in people)

    lines = []
    if sender is not None:
        lines.append(f"<b>From:</b> {who([sender])}")
    if sent is not None:
        lines.append(f"<b>Sent:</b> {html.escape(sent.strftime('%Y-%m-%d %H:%M UTC'))}")
    if to:
        lines.append(f"<b>To:</b> {who(to)}")
    lines.append(f"<b>Subject:</b> {html.escape(subject or '')}")
    body = body_html or "<pre>" + html.escape(body_text or "") + "</pre>"
    title = "Forwarded message" if mode == "forward" else "Original message"
    return (f'<p><br></p><hr><p>-------- {title} --------<br>{"<br>".join(lines)}</p>'
            f"<blockquote>{body}</blockquote>")


@dataclass
class Answer:
    """A new draft's fields in the API's shape, and what it inherits from the original."""
    data: dict
    parent_activity_id: int | None
    tracking_token: str | None


def answer(original, mode: str, *, me: set[str], signature: str = "",
           token_prefix: str | None = None) -> Answer:
    """The draft answering ``original`` (an Email with its parties) in ``mode``."""
    if mode not in MODES:
        raise ValueError(mode)

    def people(role: str) -> list[Person]:
        return [Person(_one_line(x.name or "")[:200], x.address) for x in original.parties
                if x.role == role and x.address]

    sender = next(iter(people("from")), None)
    to, cc = recipients_for(mode, sender=sender, to=people("to"), cc=people("cc"), me=me)
    subject = subject_for(mode, _one_line(original.subject or ""))
    if mode == "forward":
        subject = strip_token(subject, token_prefix)
    body = (f"<p><br></p>{signature}" if signature else "") + quoted(
        mode, sender=sender, sent=original.sent_on or original.received_on or original.occurred_on,
        subject=original.subject or "", to=people("to"), body_html=original.html_body,
        body_text=original.text_body)
    parties = [{"role": role, "address": x.address, **({"name": x.name} if x.name else {})}
               for role, group in (("to", to), ("cc", cc)) for x in group]
    data = {"type": "email", "subject": subject[:400], "html_body": body, "parties": parties}
    regarding = original.regarding_ref
    if regarding is not None:
        data["regarding"] = {"type": regarding[0], "id": regarding[1]}
    threaded = mode != "forward"
    return Answer(data, original.id if threaded else None,
                  original.tracking_token if threaded else None)
