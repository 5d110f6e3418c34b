"""Graph push for appointments, contacts and tasks: an item sync subscribes to what it read
(every calendar through one ``users/{id}/events`` subscription, each contact folder, each
To Do list), a change made in Outlook reaches the CRM through the notification while the
mailbox's next scheduled run is an hour away (a real worker, in a thread), a forged
clientState is refused, a kind the mailbox does not sync gets no subscription and loses the
one it had, and lifecycle notifications work on item subscriptions as on mail folders'. The
fake Graph posts to the application served on a loopback port (``served``)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from server.crm.activities import Appointment, Task
from server.crm.models import Contact
from server.db import db, utcnow
from server.security.models import Role
from server.sync.acts.run import sync_items
from server.sync.connectors.graph_items import EVENTS
from server.sync.engine.run import sync_mailbox
from server.sync.models import Mailbox
from tests.sync.acts.conftest import GraphSide
from tests.servers.ports import LOOPBACK
from tests.sync.graph.conftest import _Quiet, graph_mailbox
from tests.sync.graph.test_push import lifecycle_works, park, settle, subscriptions
from tests.sync.test_push import PushWorker
from tests.waiting import until

TRACKED = ["Tracked to Regarding"]
START = datetime(2030, 1, 5, 10, tzinfo=timezone.utc)


@pytest.fixture
def side(graph, served) -> GraphSide:
    return GraphSide(graph)


def seed(graph, address: str) -> dict[str, str]:
    """A tracked event, contact and task in Ann's Outlook; their ids by kind."""
    return {"appointment": graph.add_event(address, "Kick-off", START, categories=TRACKED),
            "contact": graph.add_contact(address, givenName="Carol", surname="Cole",
                                         displayName="Carol Cole", jobTitle="Buyer",
                                         categories=TRACKED),
            "task": graph.add_task(address, "Send the offer", categories=TRACKED)}


# What Outlook changes, and how the CRM record shows it.
EDITS = {"appointment": ({"subject": "Kick-off (moved)"},
                         lambda: db.session.scalar(select(Appointment.subject)),
                         "Kick-off (moved)"),
         "contact": ({"jobTitle": "Head of buying"},
                     lambda: db.session.scalar(select(Contact.job_title)), "Head of buying"),
         "task": ({"title": "Send the revised offer"},
                  lambda: db.session.scalar(select(Task.subject)), "Send the revised offer")}


def test_an_item_sync_subscribes_to_every_collection_it_reads(graph, side, make_user):
    ann = make_user("ann@contoso.test")
    box = side.mailbox(ann)
    project = graph.add_collection(ann.email, "task", "Project")
    sync_items(box.id)
    assert db.session.get(Mailbox, box.id).acts_status == "success"
    rows = subscriptions(box)
    tasks = graph.default_collection(ann.email, "task")
    assert set(rows) == {EVENTS, "contacts", tasks, project}
    held = {row.folder_key: graph.subscriptions[row.subscription_id] for row in rows.values()}
    resource = f"users/{ann.email}"
    assert {k: s.resource for k, s in held.items()} == {
        EVENTS: f"{resource}/events", "contacts": f"{resource}/contacts",
        tasks: f"{resource}/todo/lists/{tasks}/tasks",
        project: f"{resource}/todo/lists/{project}/tasks"}
    for key, sub in held.items():
        assert sub.change_types == {"created", "updated", "deleted"} and sub.lifecycle_url
        assert sub.client_state and rows[key].client_state_hash != sub.client_state
        most = timedelta(minutes=4230 if key in (tasks, project) else 10080)
        assert utcnow() + most - timedelta(hours=2) < sub.expires <= utcnow() + most
    sync_items(box.id)  # fresh subscriptions are kept as they are
    assert set(graph.subscriptions) == {r.subscription_id for r in rows.values()}
    # A To Do list deleted in Outlook: the next item sync ends its subscription.
    del graph.box(ann.email).collections[project]
    sync_items(box.id)
    assert set(subscriptions(box)) == {EVENTS, "contacts", tasks}
    assert rows[project].subscription_id not in graph.subscriptions


@pytest.mark.both_databases  # PostgreSQL too: the webhook writes while the worker runs
@pytest.mark.parametrize("kind", ["appointment", "contact", "task"])
def test_a_change_in_outlook_reaches_the_crm_through_its_notification(app, graph, side,
                                                                     make_user, kind):
    ann = make_user("ann@contoso.test")
    box = side.mailbox(ann, sync_interval_seconds=3600)
    ids = seed(graph, ann.email)
    result = sync_items(box.id)
    assert result.created == 3
    park(graph, box)
    fields, read, wanted = EDITS[kind]
    assert read() != wanted
    worker = PushWorker(app, push=False)
    try:
        graph.update_item(ann.email, ids[kind], **fields)
        until(lambda: read() == wanted, f"{wanted!r} in the CRM", session=db.session,
              detail=lambda: f"it has {read()!r}")
    finally:
        worker.close()
    assert ("notification", 202) in graph.deliveries
    row = subscriptions(box)[EVENTS if kind == "appointment" else
                             "contacts" if kind == "contact" else
                             graph.default_collection(ann.email, "task")]
    assert row.last_notification_on is not None
    assert db.session.get(Mailbox, box.id).acts_status == "success"


def test_a_forged_client_state_is_refused(graph, side, make_user, client):
    ann = make_user("ann@contoso.test")
    box = side.mailbox(ann)
    sync_items(box.id)
    park(graph, box)
    row = subscriptions(box)[EVENTS]
    forged = {"value": [{"subscriptionId": row.subscription_id, "clientState": "guess",
                         "changeType": "updated", "resource": "Users/x/Events/y"}]}
    assert client.post("/graph/notifications", json=forged).status_code == 202
    assert not settle(graph, box).sync_requested
    graph.add_event(ann.email, "Genuine", START)  # the fake's own, with the right state
    assert settle(graph, box).sync_requested


def test_a_kind_not_synced_gets_no_subscription_and_loses_the_one_it_had(graph, side,
                                                                        make_user):
    # A Customer Service Representative may sync appointments and tasks, not contacts.
    carl = make_user("carl@contoso.test", roles=("Customer Service Representative",))
    box = side.mailbox(carl)
    sync_items(box.id)
    assert set(subscriptions(box)) == {EVENTS, graph.default_collection(carl.email, "task")}
    assert not any(s.resource.endswith("/contacts") for s in graph.subscriptions.values())
    graph.add_contact(carl.email, displayName="Dan Dale", categories=TRACKED)
    assert not settle(graph, box).sync_requested  # nothing watches contacts

    ann = make_user("ann@contoso.test")
    box = side.mailbox(ann)
    sync_items(box.id)
    had = subscriptions(box)
    assert "contacts" in had
    ann.roles = [db.session.scalar(select(Role).where(
        Role.name == "Customer Service Representative"))]
    db.session.commit()
    sync_items(box.id)
    assert set(subscriptions(box)) == {EVENTS, graph.default_collection(ann.email, "task")}
    assert had["contacts"].subscription_id not in graph.subscriptions


def test_turning_the_items_method_off_ends_the_item_subscriptions(graph, store, crm, served):
    """A mailbox whose mail and items both sync over Graph: once its appointments, contacts
    and tasks method is off, the mail run's upkeep ends the item subscriptions and keeps
    the mail folders'."""
    box = graph_mailbox(store, crm.bob, acts_method="server_side_sync")
    assert sync_mailbox(box.id).status == "success"
    sync_items(box.id)
    inbox = graph.folder_id(store.address, "Inbox")
    before = subscriptions(box)
    assert {EVENTS, "contacts", inbox} <= set(before)
    box = db.session.get(Mailbox, box.id)
    box.acts_method = "none"
    db.session.commit()
    assert sync_mailbox(box.id).status == "success"
    after = subscriptions(box)
    assert EVENTS not in after and "contacts" not in after
    assert after[inbox].subscription_id == before[inbox].subscription_id
    assert {s.resource.rsplit("/", 1)[-1] for s in graph.subscriptions.values()} == {"messages"}


def test_an_items_only_mailbox_that_syncs_nothing_ends_its_subscriptions(graph, side,
                                                                         make_user):
    ann = make_user("ann@contoso.test")
    box = side.mailbox(ann)
    sync_items(box.id)
    assert len(graph.subscriptions) == 3
    ann.is_active = False  # a disabled user's mailbox syncs no items
    db.session.commit()
    result = sync_items(box.id)
    assert set(result.skipped_kinds) == {"appointment", "contact", "task"}
    assert subscriptions(box) == {} and graph.subscriptions == {}


def test_lifecycle_notifications_on_item_subscriptions(graph, side, make_user):
    ann = make_user("ann@contoso.test")
    box = side.mailbox(ann)
    sync_items(box.id)
    tasks = graph.default_collection(ann.email, "task")
    for key in (tasks, EVENTS, "contacts"):
        lifecycle_works(graph, box, key, lambda: sync_items(box.id))
    # To Do's subscriptions are renewed within its 4,230 minutes.
    assert graph.subscriptions[subscriptions(box)[tasks].subscription_id].expires <= \
        utcnow() + timedelta(minutes=4230)


def subscribe(graph, url: str, resource: str, change_type: str = "created,updated,deleted",
              minutes: int = 60, token: str | None = None) -> requests.Response:
    token = token or graph._token("app", graph.app_roles)["access_token"]
    expires = datetime.now(timezone.utc) + timedelta(minutes=minutes)
    return requests.post(f"{graph.graph_url}/subscriptions", timeout=10,
                         verify=str(graph.cert.cert_path),
                         headers={"Authorization": f"Bearer {token}"},
                         json={"resource": resource, "changeType": change_type,
                               "notificationUrl": url, "clientState": "s",
                               "expirationDateTime": expires.isoformat()})


@pytest.fixture
def receiver():
    """An endpoint that answers Graph's validation and keeps what is posted to it."""
    posted: list[dict] = []

    def app(environ, start_response):
        request = Request(environ)
        token = request.args.get("validationToken")
        if token is None:
            posted.append(request.get_json())
        return Response(token or "", 200 if token else 202, content_type="text/plain")(
            environ, start_response)

    server = make_server(LOOPBACK, 0, app, threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{LOOPBACK}:{server.server_port}/notify", posted
    server.shutdown()
    server.server_close()


def test_the_fake_takes_subscriptions_only_as_graph_does_and_notifies_them(graph, receiver):
    url, posted = receiver
    address = "ann@contoso.test"
    graph.add_mailbox(address)
    tasks = graph.default_collection(address, "task")
    calendar = graph.default_collection(address, "event")
    folder = graph.add_collection(address, "contact", "Suppliers")
    for resource in (f"users/{address}/calendars('{calendar}')/events",  # no per-calendar form
                     f"users/{address}/calendars/{calendar}/events",
                     f"users/{address}/todo/lists", f"users/{address}/events/delta",
                     "me/events"):  # /me is for a delegated token only
        assert subscribe(graph, url, resource).status_code == 400, resource
    assert subscribe(graph, url, f"users/{address}/events", "created,moved").status_code == 400
    assert subscribe(graph, url, f"users/{address}/events", "").status_code == 400
    assert subscribe(graph, url, f"users/{address}/todo/lists/{tasks}/tasks",
                     minutes=4300).status_code == 400  # To Do: 4,230 minutes at most
    assert subscribe(graph, url, f"users/{address}/todo/lists/missing/tasks").status_code == 404
    delegated = graph._token("delegated", ("Calendars.ReadWrite",), user=address)["access_token"]
    assert subscribe(graph, url, "me/contacts", token=delegated).status_code == 403
    made = {}
    for name, resource, changes, token in (
            ("events", f"users/{address}/events", "created,updated,deleted", None),
            ("me", "me/events", "created", delegated),
            ("default contacts", f"/users/{address}/contacts", "created,updated,deleted", None),
            ("suppliers", f"users/{address}/contactFolders/{folder}/contacts", "updated", None),
            ("tasks", f"users/{address}/todo/lists/{tasks}/tasks", "created,deleted", None)):
        answer = subscribe(graph, url, resource, changes, token=token,
                           minutes=4200 if "todo" in resource else 10000)
        assert answer.status_code == 201, resource
        made[answer.json()["id"]] = name
    event = graph.add_event(address, "Call", START, calendar=graph.add_collection(
        address, "event", "Second calendar"))  # any calendar's events
    graph.update_item(address, event, subject="Call (moved)")
    contact = graph.add_contact(address, folder=folder, displayName="Eve")
    graph.update_item(address, contact, jobTitle="Buyer")
    graph.add_contact(address, displayName="Frank")
    graph.delete_item(address, graph.add_task(address, "Chase"))
    graph.wait_for_deliveries()
    got = sorted((made[n["subscriptionId"]], n["changeType"], n["resourceData"]["id"])
                 for body in posted for n in body["value"])
    assert all(n["clientState"] == "s" for body in posted for n in body["value"])
    [task] = {i for _, _, i in got if i.startswith("AAMkTask")}
    frank = next(i for name, _, i in got if name == "default contacts")
    assert got == sorted([("events", "created", event), ("events", "updated", event),
                          ("me", "created", event), ("suppliers", "updated", contact),
                          ("default contacts", "created", frank),
                          ("tasks", "created", task), ("tasks", "deleted", task)])
