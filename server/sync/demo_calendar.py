"""The demo mailbox's calendar: a folder of iCalendar files beside Sam's Maildir
(``instance/maildir/sam.sales@contoso.example/items/calendar``, read by
``connectors.ics_folder``), so a newcomer sees appointments arrive with the first sync.

Two meetings are written there: a pricing call with a customer contact, marked "Tracked to
Regarding" (the sync takes it in, the contact resolved as an attendee), and a dentist
appointment without the category (it stays out, and the sync dashboard says why). Drop
another ``.ics`` file with ``CATEGORIES:Tracked to Regarding`` into the folder and the next
sync brings it in; what Sam's CRM calendar holds goes the other way, into the folder."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from icalendar import Calendar, Event
from sqlalchemy import select

from server.crm.models import Contact
from server.db import db
from server.mailkeys import normalize_address
from server.security.models import User
from server.sync.connectors.ics_folder import FOLDERS
from server.ical_text import person, serialize
from server.sync.mail.decision import TRACKED_CATEGORY

DOMAIN = "contoso.example"


def _ics(uid: str, summary: str, start: datetime, minutes: int, properties: list) -> str:
    """One meeting as iCalendar text; ``properties``: (name, value, parameters) to add."""
    start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    event = Event()
    for name, value, params in [("uid", uid, None),
                                ("dtstamp", datetime(2025, 1, 1, tzinfo=timezone.utc), None),
                                ("dtstart", start, None),
                                ("dtend", start + timedelta(minutes=minutes), None),
                                ("summary", summary, None), *properties]:
        event.add(name, value, parameters=params)
    calendar = Calendar()
    calendar.add("prodid", "-//Regarding demo//EN")
    calendar.add("version", "2.0")
    calendar.add_component(event)
    return serialize(calendar).decode()


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
    people = [("organizer", person(sam.email, sam.full_name), None)]
    if contact is not None:
        attendee = person(normalize_address(contact.email1), contact.full_name)
        attendee.params.update(PARTSTAT="ACCEPTED", ROLE="REQ-PARTICIPANT")
        people.append(("attendee", attendee, None))
    meetings = {
        f"demo-pricing-call@{DOMAIN}": _ics(
            f"demo-pricing-call@{DOMAIN}", "Pricing call", tomorrow, 45,
            [*people, ("location", "Teams", None), ("categories", [TRACKED_CATEGORY], None)]),
        f"demo-dentist@{DOMAIN}": _ics(
            f"demo-dentist@{DOMAIN}", "Dentist", tomorrow + timedelta(days=1, hours=-6), 60,
            [("transp", "OPAQUE", None)]),
    }
    for uid, text in meetings.items():
        (folder / f"{uid}{FOLDERS['appointment'][1]}").write_text(text, encoding="utf-8")
    return len(meetings)
