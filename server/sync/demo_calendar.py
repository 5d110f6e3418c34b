"""The demo mailbox's calendar: a folder of iCalendar files beside Sam's Maildir
(``instance/maildir/sam.sales@contoso.example/items/calendar``, read by
``connectors.ics_folder``), so a newcomer sees appointments arrive with the first sync.

Two meetings are written there: a pricing call with a customer contact, marked "Tracked to
Regarding" (the sync takes it in, the contact resolved as an attendee), and a dentist
appointment without the category (it stays out, and the sync dashboard says why). Drop
another ``.ics`` file with ``CATEGORIES:Tracked to Regarding`` into the folder and the next
sync brings it in; what Sam's CRM calendar holds goes the other way, into the folder."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from server.crm.models import Contact
from server.db import db
from server.mailkeys import normalize_address
from server.security.models import User
from server.sync.connectors.ics_folder import FOLDERS
from server.sync.mail.decision import TRACKED_CATEGORY

DOMAIN = "contoso.example"


def _ics(uid: str, summary: str, start: datetime, minutes: int, lines: list[str]) -> str:
    stamp = start.strftime("%Y%m%dT%H%M%SZ")
    end = (start + timedelta(minutes=minutes)).strftime("%Y%m%dT%H%M%SZ")
    body = [f"UID:{uid}", "DTSTAMP:20250101T000000Z", f"DTSTART:{stamp}", f"DTEND:{end}",
            f"SUMMARY:{summary}", *lines]
    return "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Regarding demo//EN",
                        "BEGIN:VEVENT", *body, "END:VEVENT", "END:VCALENDAR", ""])


def seed_demo_calendar(root: Path, sam: User, now: datetime) -> int:
    """Write the demo meetings into the mailbox's calendar folder (not over files already
    there); returns how many were written."""
    folder = root / "items" / FOLDERS["appointment"][0]
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        return 0
    contact = db.session.scalar(select(Contact).where(
        Contact.owner_user_id == sam.id, Contact.is_active.is_(True),
        Contact.email1.is_not(None)).order_by(Contact.id).limit(1))
    tomorrow = (now + timedelta(days=1)).replace(hour=15, minute=0, second=0, microsecond=0)
    people = [f"ORGANIZER;CN={sam.full_name}:mailto:{sam.email}"]
    if contact is not None:
        people.append(f"ATTENDEE;CN={contact.full_name};PARTSTAT=ACCEPTED;"
                      f"ROLE=REQ-PARTICIPANT:mailto:{normalize_address(contact.email1)}")
    meetings = {
        f"demo-pricing-call@{DOMAIN}": _ics(
            f"demo-pricing-call@{DOMAIN}", "Pricing call", tomorrow, 45,
            [*people, "LOCATION:Teams", f"CATEGORIES:{TRACKED_CATEGORY}"]),
        f"demo-dentist@{DOMAIN}": _ics(
            f"demo-dentist@{DOMAIN}", "Dentist", tomorrow + timedelta(days=1, hours=-6), 60,
            ["TRANSP:OPAQUE"]),
    }
    for uid, text in meetings.items():
        (folder / f"{uid}{FOLDERS['appointment'][1]}").write_text(text, encoding="utf-8")
    return len(meetings)
