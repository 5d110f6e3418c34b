"""The Graph connector against the fake Graph service: folders, delta pages and links,
immutable ids over moves, MIME through $batch, categories written back in batches, expired
delta links, throttling, the per-mailbox limits, token expiry and the errors that say what
an admin must fix."""
from __future__ import annotations

from dataclasses import replace

import pytest

from server.sync.engine import oauth
from server.sync.engine.accounts import account_for
from server.sync.connectors.base import ConnectorError
from server.sync.connectors.graph import GraphConnector
from server.sync.connectors.graph_send import GraphSender
from tests.sync import world as w
from tests.sync.connectors.conftest import exercise
from tests.sync.graph.conftest import GraphStore, graph_mailbox

ADDRESS = "bob@org.example"


@pytest.fixture
def store(graph):
    return GraphStore(graph, ADDRESS)


@pytest.fixture
def box(app, make_user, store):
    return graph_mailbox(store, make_user(ADDRESS))


def connect(box) -> GraphConnector:
    return GraphConnector(account_for(box, "incoming"))


def folders_of(conn) -> dict:
    return {f.name: f for f in conn.list_folders()}


def numbered(n: int, **headers) -> bytes:
    return w.raw(mid=f"m{n}@customer.example", subject=f"Message {n}", **headers)


def test_folders_have_ids_roles_and_paths(graph, store, box):
    deal = store.create_folder("Inbox/Contoso deal")
    store.create_folder("Inbox/Contoso deal/Legal")
    with connect(box) as conn:
        folders = folders_of(conn)
    assert graph.stats["http"] == 1  # one $batch: well-known folders and the whole tree
    assert {n: f.role for n, f in folders.items() if f.role != "other"} == {
        "Inbox": "inbox", "Sent Items": "sent", "Drafts": "drafts", "Deleted Items": "trash",
        "Junk Email": "junk"}
    assert folders["Inbox/Contoso deal"].key == deal
    assert folders["Inbox/Contoso deal"].parent_key == folders["Inbox"].key
    assert folders["Inbox/Contoso deal/Legal"].parent_key == deal
    assert folders["Inbox"].parent_key is None  # the store's root is no folder


def test_graph_does_what_it_declares(graph, store, box):
    for n in (1, 2, 3):
        store.deliver(numbered(n))
    with connect(box) as conn:
        exercise(conn, folders_of(conn)["Inbox"], 3)
    assert all("Tracked to Regarding" in k for k in store.keywords("Inbox"))


def test_folders_below_the_top_level_are_found_when_the_listing_stops_there(graph, store, box):
    graph.folder_delta_flat = False
    store.create_folder("Inbox/Contoso deal")
    legal = store.create_folder("Inbox/Contoso deal/Legal")
    with connect(box) as conn:
        folders = folders_of(conn)
    assert folders["Inbox/Contoso deal/Legal"].key == legal
    assert folders["Inbox/Contoso deal"].parent_key == folders["Inbox"].key


def test_delta_pages_links_and_removed_entries(graph, store, box):
    refs = [store.deliver(numbered(n)) for n in range(1, 26)]
    with connect(box) as conn:
        inbox = folders_of(conn)["Inbox"]
        pages, cursor = [], None
        while True:
            changes = conn.fetch_changes(inbox, cursor, limit=10)
            pages.append(changes)
            cursor = changes.cursor
            if not changes.more:
                break
        assert [len(p.messages) for p in pages] == [10, 10, 5]
        assert "$skiptoken=" in pages[0].cursor and "$deltatoken=" in pages[-1].cursor
        assert [m.ref for p in pages for m in p.messages] == refs
        assert pages[0].messages[0].raw == numbered(1)  # the MIME, byte for byte
        assert pages[0].messages[0].arrived_on is not None
        # A message moved elsewhere and one deleted: removed; a new one: fetched.
        store.move(refs[0], "Inbox", "Deleted Items")
        graph.delete_message(ADDRESS, refs[1])
        new = store.deliver(numbered(26))
        changes = conn.fetch_changes(inbox, cursor)
    assert set(changes.removed) == {refs[0], refs[1]}
    assert [m.ref for m in changes.messages] == [new] and not changes.more
    # MIME came in $batch requests of 20, not one request per message.
    assert graph.stats["mime"] == 26 and graph.stats["batch_items"] >= 26
    assert graph.stats["http"] < 15


def test_ids_are_immutable_over_a_move(graph, store, box):
    store.create_folder("Inbox/Contoso deal")
    ref = store.deliver(numbered(1))
    with connect(box) as conn:
        folders = folders_of(conn)
        first = conn.fetch_changes(folders["Inbox"], None)
        deal = conn.fetch_changes(folders["Inbox/Contoso deal"], None)
        store.move(ref, "Inbox", "Inbox/Contoso deal")
        moved = conn.fetch_changes(folders["Inbox/Contoso deal"], deal.cursor)
    assert first.messages[0].ref == ref == moved.messages[0].ref


def test_categories_are_keywords_and_are_written_back_in_batches(graph, store, box):
    refs = [store.deliver(numbered(n), categories=["Blue category"] if n == 1 else ())
            for n in range(1, 46)]
    with connect(box) as conn:
        inbox = folders_of(conn)["Inbox"]
        changes = conn.fetch_changes(inbox, None)
        assert changes.messages[0].keywords == ("Blue category",)
        for message in changes.messages:
            conn.set_keyword(inbox, message.ref, "Tracked to Regarding")
        conn.set_keyword(inbox, refs[0], "Tracked to Regarding")  # already queued: once
    assert graph.stats["patch"] == 45
    assert graph.message(ADDRESS, refs[0]).categories == ["Blue category", "Tracked to Regarding"]
    assert all("Tracked to Regarding" in graph.message(ADDRESS, r).categories for r in refs)


def test_expired_delta_link_starts_the_folder_over(graph, store, box):
    store.deliver(numbered(1))
    with connect(box) as conn:
        inbox = folders_of(conn)["Inbox"]
        cursor = conn.fetch_changes(inbox, None).cursor
        graph.expire_delta_tokens()
        again = conn.fetch_changes(inbox, cursor)
    assert again.reset and len(again.messages) == 1


def test_a_link_to_another_host_is_not_followed(store, box):
    store.deliver(numbered(1))
    with connect(box) as conn:
        inbox = folders_of(conn)["Inbox"]
        changes = conn.fetch_changes(inbox, "https://attacker.example/v1.0/steal?$deltatoken=x")
    assert changes.reset and len(changes.messages) == 1


def test_throttling_is_retried_after_retry_after(graph, store, box):
    store.deliver(numbered(1))
    with connect(box) as conn:
        inbox = folders_of(conn)["Inbox"]
        graph.throttle(2, retry_after=0)
        changes = conn.fetch_changes(inbox, None)
    assert len(changes.messages) == 1 and graph.stats["throttled"] == 2


def test_a_long_retry_after_is_handed_to_the_engine(graph, store, box):
    with connect(box) as conn:
        graph.throttle(1, retry_after=120)
        with pytest.raises(ConnectorError) as caught:
            conn.list_folders()
    assert caught.value.code == "throttled" and caught.value.retry_after == 120
    assert caught.value.severity == "mailbox"


def test_at_most_four_requests_at_once_per_mailbox(graph, store, box):
    """Batches go out in parallel, four at a time, and two connectors of one mailbox in
    this process share those four."""
    for n in range(1, 201):
        store.deliver(numbered(n))
    graph.delay = 0.05
    results = []
    connectors = [connect(box).__enter__() for _ in range(2)]  # signed in here
    inbox = folders_of(connectors[0])["Inbox"]

    def read(conn):
        results.append(conn.fetch_changes(inbox, None, limit=200))

    import threading
    threads = [threading.Thread(target=read, args=(c,)) for c in connectors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for conn in connectors:
        conn.__exit__(None, None, None)
    assert [len(r.messages) for r in results] == [200, 200]
    assert graph.max_in_flight[ADDRESS] == 4 and graph.stats["concurrency_429"] == 0


def test_the_request_budget_stops_a_mailbox_before_graph_does(graph, store, box):
    box.server_profile.settings = {**box.server_profile.settings, "graph_request_budget": 25}
    for n in range(1, 60):
        store.deliver(numbered(n))
    with connect(box) as conn:
        inbox = folders_of(conn)["Inbox"]  # 7 requests (a batch of 7)
        with pytest.raises(ConnectorError) as caught:
            conn.fetch_changes(inbox, None, limit=100)
    assert caught.value.code == "request_budget" and caught.value.retry_after > 0


def test_an_expired_token_is_renewed(graph, store, box):
    store.deliver(numbered(1))
    with connect(box) as conn:
        inbox = folders_of(conn)["Inbox"]
        graph.expire_tokens()
        changes = conn.fetch_changes(inbox, None)
    assert len(changes.messages) == 1 and graph.stats["token"] == 2


@pytest.mark.parametrize("problem, code, words", [
    ("consent", "consent_missing", "admin consent"),
    ("policy", "access_policy_missing", "New-ApplicationAccessPolicy"),
    ("mailbox", "mailbox_not_found", "Exchange Online has no mailbox"),
    ("secret", "oauth_failed", "Invalid client secret"),
])
def test_access_errors_say_what_to_fix(graph, store, box, problem, code, words):
    if problem == "consent":
        graph.app_roles = ()
    elif problem == "policy":
        graph.access_policy = {"someone-else@org.example"}
    elif problem == "mailbox":
        del graph.mailboxes[ADDRESS]
    else:
        box.server_profile.oauth_client_secret = "wrong"
    with pytest.raises(ConnectorError) as caught:
        with connect(box) as conn:
            conn.list_folders()
    assert caught.value.code == code and words in caught.value.message
    assert caught.value.severity in ("auth", "fatal")


def test_only_https_graph_addresses(store, box):
    box.server_profile.settings = {**box.server_profile.settings,
                                   "graph_url": "http://127.0.0.1:1/v1.0"}
    with pytest.raises(ConnectorError) as caught:
        with connect(box):
            pass
    assert caught.value.code == "graph_url_insecure"


def test_sender_drafts_adds_bcc_sends_and_keeps_a_sent_copy(graph, store, box):
    graph.add_mailbox("ann@customer.example")
    raw = w.raw(sender=f"Bob <{ADDRESS}>", to="ann@customer.example", mid="out1@org.example",
                subject="Quote")
    with GraphSender(account_for(box, "outgoing")) as sender:
        sender.verify(ADDRESS, ADDRESS)
        assert sender.send(raw, ADDRESS, ["ann@customer.example", "boss@org.example"]) == {}
    sent = graph.messages_in(ADDRESS, "Sent Items")
    assert len(sent) == 1 and sent[0].bcc == ["boss@org.example"] and not sent[0].is_draft
    assert graph.messages_in(ADDRESS, "Drafts") == []
    assert sender.internet_message_ids == {"<out1@org.example>": "<out1@org.example>"}
    assert [m.internet_message_id for m in graph.messages_in("ann@customer.example", "Inbox")] \
        == ["<out1@org.example>"]


def test_sender_without_mail_send_is_refused_by_test_and_enable(graph, store, box):
    graph.app_roles = ("Mail.ReadWrite",)
    with pytest.raises(ConnectorError) as caught:
        with GraphSender(account_for(box, "outgoing")) as sender:
            sender.verify(ADDRESS, ADDRESS)
    assert caught.value.code == "send_denied" and "Mail.Send" in caught.value.message


def test_delegated_access_through_on_behalf_of(graph, store, box):
    assertion = graph.issue_assertion(ADDRESS)
    oauth.exchange_on_behalf_of(box, assertion)
    assert box.oauth_refresh_token
    store.deliver(numbered(1))
    account = account_for(box, "incoming")
    assert account.delegated
    with GraphConnector(account) as conn:
        assert len(conn.fetch_changes(folders_of(conn)["Inbox"], None).messages) == 1
    # A delegated token reaches only its own mailbox.
    graph.add_mailbox("carol@org.example")
    elsewhere = replace(account, address="carol@org.example")
    with pytest.raises(ConnectorError) as caught:
        with GraphConnector(elsewhere) as conn:
            conn.list_folders()
    assert caught.value.code == "consent_missing" and "connect it again" in caught.value.message
