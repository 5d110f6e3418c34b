"""The fake Graph service and the Graph connectors held to Microsoft's own schema (Graph
v1.0's CSDL): every property the fake answers, and every property the mail connector and
the item store select, expand, filter on, order by or write, must be on that entity type
with a compatible type: messages and mail folders as much as events, contacts,
to-do tasks, their folders and lists, and subscriptions."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from server.sync.connectors.base import Account
from server.sync.connectors.graph import GraphConnector
from server.sync.connectors.graph_items import GraphItemStore
from tests.servers.ports import LOOPBACK
from tests.sync import world as w
from tests.sync.graph.conftest import GraphStore, _Quiet
from tests.sync.graph.csdl import CSDL, Schema, action_route, route
from tests.sync.graph.test_items import WEEKLY
from tests.sync.item_stores import CARD, NEW, START

ADDRESS = "bob@org.example"
pytestmark = pytest.mark.skipif(CSDL is None, reason="../shared/reference/msgraph-v1.0.csdl.xml "
                                "is not beside the repository")


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema(CSDL)


def account(graph) -> Account:
    return Account(address=ADDRESS, settings=graph.profile_settings(),
                   token_provider=lambda fresh=False: graph._token("app", graph.app_roles)["access_token"])


@pytest.fixture
def receiver():
    """An endpoint that answers Graph's subscription validation."""
    def app(environ, start_response):
        request = Request(environ)
        token = request.args.get("validationToken")
        return Response(token or "", 200 if token else 202, content_type="text/plain")(
            environ, start_response)

    server = make_server(LOOPBACK, 0, app, threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{LOOPBACK}:{server.server_port}/notify"
    server.shutdown()
    server.server_close()


def test_the_checker_finds_what_is_not_in_the_schema(schema):
    assert schema.check("event", {"subject": "x", "isAllDay": False, "categories": ["a"]}) == []
    assert schema.check("event", {"subjekt": "x"}) == ["event.subjekt: no such property on event"]
    assert schema.check("event", {"isAllDay": "yes"}) == ["event.isAllDay: 'yes' is not Edm.Boolean"]
    assert schema.check("event", {"showAs": "away"}) == ["event.showAs: 'away' is not a freeBusyStatus"]
    assert schema.check("contact", {"birthday": "1980-05-01"})  # a DateTimeOffset needs a time
    assert schema.check("todoTask", {"dueDateTime": {"dateTime": "2024-01-01T00:00:00",
                                                     "timeZone": "UTC", "zone": "x"}})
    assert schema.check_request("GET", "/users/a@b/mailFolders/x/messages/delta",
                                {"$select": "categories,receivedAt"}, None, 200, None)
    assert schema.check_request("GET", "/users/a@b/calendars/x/calendarView/delta",
                                {"$filter": "organizer eq 'x'", "$select": "subject"}, None, 200,
                                {"value": [{"id": "1", "subject": "s"}]}) == []
    assert schema.check_request("POST", "/users/a@b/contacts", {}, {"mobilePhones": ["1"]},
                                201, None)
    assert route("/users/a@b/messages/m1/$value") is None  # MIME, not an entity
    assert schema.check_request("POST", "/users/a@b/messages/m1/move", {},
                                {"destinationId": "f"}, 201, {"id": "m1", "subject": "s"}) == []
    assert schema.check_request("POST", "/users/a@b/messages/m1/move", {},
                                {"folderId": "f"}, 201, None)  # not the action's parameter
    assert schema.check_request("POST", "/users/a@b/messages/m1/file", {}, {}, 201, None)


def test_the_fake_and_the_connectors_keep_to_the_schema(graph, schema, receiver):
    graph.add_mailbox(ADDRESS)
    graph.record = []
    inbox = "Inbox"
    for n in range(3):
        graph.deliver(ADDRESS, w.raw(mid=f"m{n}@customer.example", subject=f"Message {n}"), inbox)
    graph.create_folder(ADDRESS, "Inbox/Contoso deal")
    series = graph.add_event(ADDRESS, "Weekly review", START, recurrence=WEEKLY,
                             categories=["Tracked to Regarding"], sensitivity="private",
                             showAs="tentative", isReminderOn=True, reminderMinutesBeforeStart=15,
                             attendees=[{"type": "required", "status": {"response": "accepted"},
                                         "emailAddress": {"address": "ann@customer.example",
                                                          "name": "Ann"}}],
                             organizer={"emailAddress": {"address": ADDRESS, "name": "Bob"}})
    graph.change_occurrence(ADDRESS, series, (START + timedelta(days=7)).date(), subject="Moved")
    graph.cancel_occurrence(ADDRESS, series, (START + timedelta(days=14)).date())
    graph.seed_items(ADDRESS, events=6, contacts=4, tasks=2, recurring=0.5)
    graph.add_contact(ADDRESS, displayName="Ann Lee", birthday="1980-05-01T11:59:00Z",
                      homeAddress={"street": "1 Main St", "city": "Springfield"},
                      mobilePhone="+1 555 0100", jobTitle="Buyer")
    expires = datetime.now(timezone.utc) + timedelta(days=1)
    with GraphConnector(account(graph)) as mail:
        folders = {f.name: f for f in mail.list_folders()}
        changes = mail.fetch_changes(folders[inbox], None)
        mail.set_keywords(folders[inbox], [m.ref for m in changes.messages], "Tracked to Regarding")
        mail.create_subscription(folders[inbox].key, receiver, "state", expires)
    with GraphItemStore(account(graph)) as store:
        for kind in ("appointment", "contact", "task"):
            collection = next(c for c in store.collections(kind) if c.default)
            read = store.changes(collection, None)
            made = store.put(collection, NEW[kind])
            store.put(collection, NEW[kind], made.ref, made.etag)
            store.put_many(collection, [(NEW[kind].replace("1", "2"), None, None)])
            store.delete(collection, made.ref)
            store.changes(collection, read.cursor)
            store.create_subscription(collection.key, receiver, "state", expires)
        calendar = next(c for c in store.collections("appointment") if c.default)
        text = next(i for i in store.changes(calendar, None).items if i.ref == series).data
        store.put(calendar, text.replace("Weekly review", "Weekly review 2").replace(
            "UID:", "UID:x-"))
        folder = next(c for c in store.collections("contact") if c.default)
        store.put(folder, CARD.replace("END:VCARD", "BDAY:19800501\r\nADR;TYPE=home:;;1 Main St;"
                                       "Springfield;;;\r\nTEL;TYPE=cell:+1 555\r\nEND:VCARD"))
    outlook = GraphStore(graph, ADDRESS, added=True)  # a mail client, through the API
    ref = graph.messages_in(ADDRESS, inbox)[0].id
    outlook.copy(ref, inbox, "Inbox/Contoso deal")
    outlook.move(ref, inbox, "Inbox/Contoso deal")
    outlook.rename_folder("Inbox/Contoso deal", "Inbox/Contoso 2025")
    recorded = graph.record
    graph.record = None
    kinds = {route(path) for _, path, *_ in recorded} - {None}
    assert kinds >= {"mailFolder", "message", "calendar", "event", "contactFolder", "contact",
                     "todoTaskList", "todoTask", "subscription"}
    assert {action_route(path) for _, path, *_ in recorded} >= {("message", "move"),
                                                                 ("message", "copy")}
    wrong = [problem for exchange in recorded for problem in schema.check_request(*exchange)]
    assert wrong == []
