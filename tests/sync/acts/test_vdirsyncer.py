"""vdirsyncer (a CalDAV/CardDAV client no one here wrote) and the item sync changing the
same Radicale calendar and address book at the same time: each side's edits reach the
other, and nothing is lost or duplicated."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from server.crm.activities import Appointment
from server.crm.models import Contact
from server.db import db
from server.sync.acts.run import sync_items
from server.sync.items.calendar import read_event
from server.sync.items.vcard import read_contact
from tests.sync.acts.conftest import event

VDIRSYNCER = Path(sys.executable).parent / "vdirsyncer"
TRACKED = "CATEGORIES:Tracked to Regarding\r\n"


class Vdirsyncer:
    def __init__(self, root: Path, url: str, dav):
        self.root, self.config = root, root / "config"
        self.calendars, self.books = root / "calendars", root / "contacts"
        pairs = []
        for name, kind, folder, ext in (("cal", "caldav", self.calendars, ".ics"),
                                        ("book", "carddav", self.books, ".vcf")):
            folder.mkdir(parents=True)
            pairs.append(f"""
[pair {name}]
a = "{name}_local"
b = "{name}_remote"
collections = ["from b"]
conflict_resolution = "a wins"

[storage {name}_local]
type = "filesystem"
path = "{folder}/"
fileext = "{ext}"

[storage {name}_remote]
type = "{kind}"
url = "{url}/"
username = "{dav.username}"
password = "{dav.password}"
""")
        self.config.write_text(f'[general]\nstatus_path = "{root}/status/"\n' + "".join(pairs))

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([str(VDIRSYNCER), "-c", str(self.config), *args],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def run(self, *args: str) -> str:
        proc = self.start(*args)
        out, _ = proc.communicate("y\n" * 10, timeout=120)
        assert proc.returncode == 0, out
        return out

    def files(self, folder: Path) -> dict[str, Path]:
        return {p.stem: p for p in folder.rglob("*") if p.suffix in (".ics", ".vcf")}


@pytest.mark.skipif(not VDIRSYNCER.exists(), reason="vdirsyncer is not installed")
def test_vdirsyncer_and_the_crm_change_the_same_collections_at_once(store, make_user, tmp_path):
    if store.name != "radicale":
        pytest.skip("vdirsyncer speaks CalDAV/CardDAV")
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    owner = {"owner_user_id": ann.id, "owning_business_unit_id": ann.business_unit_id}
    db.session.add_all([
        Contact(first_name="Carol", last_name="Cole", full_name="Carol Cole", job_title="Buyer",
                **owner),
        Appointment(subject="Kick-off", occurred_on=datetime(2030, 1, 1, tzinfo=timezone.utc),
                    scheduled_start=datetime(2030, 1, 1, 9, tzinfo=timezone.utc),
                    scheduled_end=datetime(2030, 1, 1, 10, tzinfo=timezone.utc), **owner)])
    db.session.commit()
    sync_items(box.id)  # the CRM's records go to Radicale
    client = Vdirsyncer(tmp_path / "vdir", store.radicale.url, store.users[ann.id])
    client.run("discover")
    client.run("sync")
    cards, events = client.files(client.books), client.files(client.calendars)
    assert len(cards) == 1 and len(events) == 1
    # vdirsyncer's user edits Carol and adds a tracked meeting and a contact; at the same
    # time the CRM renames the kick-off and adds a contact of its own.
    [card] = cards.values()
    card.write_text(card.read_text().replace("TITLE:Buyer", "TITLE:Head of buying"))
    folder = next(iter(events.values())).parent
    (folder / "from-vdir.ics").write_text(event("from-vdir@x", "Site visit", TRACKED))
    (next(iter(cards.values())).parent / "dan.vcf").write_text(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:dan@x\r\nFN:Dan Dale\r\nN:Dale;Dan;;;\r\n"
        f"{TRACKED}END:VCARD\r\n")
    kickoff = db.session.scalar(select(Appointment).where(Appointment.subject == "Kick-off"))
    kickoff.subject = "Kick-off (agenda)"
    db.session.add(Contact(first_name="Erin", last_name="Eve", full_name="Erin Eve", **owner))
    db.session.commit()
    running = client.start("sync")
    sync_items(box.id)
    out, _ = running.communicate("y\n" * 10, timeout=120)
    assert running.returncode == 0, out
    for _ in range(2):  # both sides settle
        sync_items(box.id)
        client.run("sync")
    db.session.expire_all()
    contacts = {c.full_name: c for c in db.session.scalars(select(Contact))}
    assert sorted(contacts) == ["Carol Cole", "Dan Dale", "Erin Eve"]
    assert contacts["Carol Cole"].job_title == "Head of buying"
    meetings = sorted(a.subject for a in db.session.scalars(select(Appointment)))
    assert meetings == ["Kick-off (agenda)", "Site visit"]
    local_cards = [read_contact(p.read_text()) for p in client.files(client.books).values()]
    assert sorted(c["full_name"] for c in local_cards) == ["Carol Cole", "Dan Dale", "Erin Eve"]
    local_events = [read_event(p.read_text()) for p in client.files(client.calendars).values()]
    assert sorted(e["subject"] for e in local_events) == ["Kick-off (agenda)", "Site visit"]
