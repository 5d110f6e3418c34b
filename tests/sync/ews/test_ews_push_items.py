"""EWS push for appointments, contacts and tasks: a worker with push on waits on the
calendar, contacts and tasks folders of a mailbox that syncs them, in the same streaming
subscription as its Inbox and tracked folders, so an event, a contact and a task changed in
Outlook (the fake Exchange) reach the CRM long before the mailbox's next scheduled run (an
hour away). Turning item sync off, or a privilege taken away, starts the watch over without
those folders."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.crm.activities import Appointment, Task
from server.crm.models import Contact
from server.db import db
from server.security.models import Role
from server.sync.acts.run import sync_items
from server.sync.connectors.ews_items import EwsItemStore
from server.sync.models import Mailbox
from server.sync.workers import push
from tests.sync.ews.conftest import BOB, ews_account
from tests.sync.ews.test_ews_engine import EwsStore
from tests.sync.ews.test_ews_push import tracked_folder_mailbox
from tests.sync.item_stores import default, event_text
from tests.sync.test_push import (PushWorker, brought_by_push_alone, park, push_runs,
                                  wait_at_rest, watching)
from tests.waiting import until

TRACKED = "CATEGORIES:Tracked to Regarding\r\n"
CARD = ("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:dan@x\r\nFN:Dan Dale\r\nN:Dale;Dan;;;\r\n"
        "EMAIL:dan@fabrikam.example\r\nTITLE:Buyer\r\nCATEGORIES:Tracked to Regarding\r\n"
        "END:VCARD\r\n")
TODO = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VTODO\r\nUID:t@x\r\n"
        "SUMMARY:Send the offer\r\nDUE;VALUE=DATE:20300105\r\nSTATUS:NEEDS-ACTION\r\n"
        f"{TRACKED}END:VTODO\r\nEND:VCALENDAR\r\n")


@pytest.fixture(autouse=True)
def quick_refresh(hour_long_schedule, monkeypatch):
    """The watched set is looked at every half second instead of every 30."""
    monkeypatch.setattr(push, "REFRESH_SECONDS", 0.5)


def items_mailbox(crm, exchange) -> Mailbox:
    """Bob's EWS mailbox (Inbox and a tracked folder) syncing his appointments, contacts
    and tasks too."""
    box = tracked_folder_mailbox(crm, EwsStore(exchange))
    box.acts_method = "server_side_sync"
    db.session.commit()
    return box


def folder_ids(exchange) -> dict[str, str]:
    box = exchange.mailbox(BOB)
    return {name: box.folder(name).id for name in
            ("inbox", "Inbox/Contoso deal", "calendar", "contacts", "tasks")}


def subscribed(exchange, folders: set[str]) -> None:
    """Wait until the newest subscription (the running watcher's) is on exactly these
    folders. (One a stopped watcher failed to unsubscribe stays in the fake: Exchange lets
    it expire.)"""
    def newest() -> list[set[str]]:
        with exchange.lock:
            return [set(s["folders"]) for s in exchange.subscriptions.values()][-1:]
    until(lambda: newest() == [folders], f"the newest subscription on {folders}",
          detail=lambda: f"it is on {newest()}")


def test_an_event_contact_and_task_changed_in_outlook_reach_the_crm_by_push(app, crm,
                                                                             exchange):
    box = items_mailbox(crm, exchange)
    with EwsItemStore(ews_account(exchange)) as outlook:
        refs = {kind: outlook.put(default(outlook, kind), text).ref for kind, text in (
            ("appointment", event_text("call@x", "Pricing call", extra=TRACKED)),
            ("contact", CARD), ("task", TODO))}
    assert sync_items(box.id).created == 3
    park(box)  # and the items are synced: the next scheduled run is an hour away
    ids = folder_ids(exchange)
    worker = PushWorker(app)
    try:
        watching(box)
        subscribed(exchange, set(ids.values()))  # one subscription: mail and items
        for kind, tag, value, arrived in (
                ("appointment", "Subject", "Pricing call (moved)", select(Appointment.id).where(
                    Appointment.subject == "Pricing call (moved)")),
                ("contact", "JobTitle", "Head of buying", select(Contact.id).where(
                    Contact.full_name == "Dan Dale", Contact.job_title == "Head of buying")),
                ("task", "Subject", "Send the new offer", select(Task.id).where(
                    Task.subject == "Send the new offer"))):
            wait_at_rest(box)  # no run under way or asked for: only push can bring the next
            before = push_runs(box)
            exchange.set_field(BOB, refs[kind], tag, value)
            until(lambda: db.session.scalar(arrived), f"the {kind} in the CRM",
                  session=db.session)
            # the run that brought it may be recorded after the item is seen: wait for it too
            until(lambda: push_runs(box) > before, "a push run recorded", session=db.session)
    finally:
        worker.close()
    brought_by_push_alone(box)


def test_item_sync_turned_off_or_a_privilege_taken_away_is_no_longer_watched(app, crm,
                                                                              exchange):
    box = items_mailbox(crm, exchange)
    ids = folder_ids(exchange)
    mail = {ids["inbox"], ids["Inbox/Contoso deal"]}
    park(box)
    worker = PushWorker(app)
    try:
        watching(box)
        subscribed(exchange, set(ids.values()))
        # Bob a Customer Service Representative: no "Sync contacts" privilege.
        bob = db.session.get(type(crm.bob), crm.bob.id)
        bob.roles = [db.session.scalar(select(Role).where(
            Role.name == "Customer Service Representative"))]
        db.session.commit()
        subscribed(exchange, mail | {ids["calendar"], ids["tasks"]})
        db.session.get(Mailbox, box.id).acts_method = "none"
        db.session.commit()
        subscribed(exchange, mail)
    finally:
        worker.close()
