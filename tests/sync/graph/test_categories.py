"""The Graph connector's ``set_keywords`` against the fake Graph service: the category of
a batch of tracked messages written with PATCHes 20 to a ``$batch`` request, each message's
own categories kept (each list read again just before, in batches too, so a category set in
Outlook since the message was read is kept), a message deleted meanwhile skipped, a 429 inside a batch retried after its Retry-After (or handed to
the engine when the wait is long), other failures raised saying how many were not written,
an expired token renewed, and the engine writing a folder's batch through it."""
from __future__ import annotations

import math

import pytest

from server.sync.connectors.base import ConnectorError
from server.sync.engine.run import sync_mailbox
from tests.sync.graph.conftest import BOB as ADDRESS
from tests.sync.graph.conftest import graph_mailbox
from tests.sync.graph.test_connector import connect, folders_of, numbered

TRACKED = "Tracked to Regarding"


@pytest.fixture
def box(app, make_user, store):
    """Bob's mailbox (``store``: his mailbox in the fake service, from conftest)."""
    return graph_mailbox(store, make_user(ADDRESS))


def inbox_of(conn):
    return folders_of(conn)["Inbox"]


def deliver(store, count: int, categories=lambda n: ()) -> list[str]:
    return [store.deliver(numbered(n), categories=categories(n)) for n in range(count)]


def own_categories(n: int) -> tuple[str, ...]:
    """Some messages carry categories of their own; one has ours already (other case)."""
    return {0: ("Blue category",), 7: ("Red category", "Green category"),
            30: ("tracked to regarding",)}.get(n, ())


def batches(graph) -> int:
    return graph.stats["batch"]


@pytest.mark.parametrize("count", [20, 45])
def test_a_batch_is_written_in_batches_of_20_keeping_own_categories(graph, store, box, count):
    refs = deliver(store, count, own_categories)
    with connect(box) as conn:
        inbox = inbox_of(conn)
        conn.fetch_changes(inbox, None)
        before, patches = batches(graph), graph.stats["patch"]
        conn.set_keywords(inbox, refs, TRACKED)
        written = graph.stats["patch"] - patches
        # written now, not at close: the lists read again, then the PATCHes
        assert batches(graph) - before == math.ceil(count / 20) + math.ceil(written / 20)
    already = 1 if count > 30 else 0
    assert written == count - already
    categories = [graph.message(ADDRESS, r).categories for r in refs]
    assert categories[0] == ["Blue category", TRACKED]
    assert categories[7] == ["Red category", "Green category", TRACKED]
    if already:
        assert categories[30] == ["tracked to regarding"]  # had it: not written again
    assert all(TRACKED.casefold() in {c.casefold() for c in cs} for cs in categories)


@pytest.mark.parametrize("read_first", [True, False])
def test_each_list_is_read_again_before_it_is_written(graph, store, box, read_first):
    """Graph replaces a message's whole category list: a category set in Outlook after the
    message was read (while its batch was being tracked) is kept, whether or not the
    message was read in this session."""
    refs = deliver(store, 25, own_categories)
    with connect(box) as conn:
        inbox = inbox_of(conn)
        if read_first:
            conn.fetch_changes(inbox, None)
            graph.set_categories(ADDRESS, refs[3], ["Purple category"])  # in Outlook
        before, items = batches(graph), graph.stats["batch_items"]
        conn.set_keywords(inbox, refs, TRACKED)
        assert batches(graph) - before == 4  # 2 of GETs, 2 of PATCHes
        assert graph.stats["batch_items"] - items == 50
    assert graph.message(ADDRESS, refs[0]).categories == ["Blue category", TRACKED]
    assert graph.message(ADDRESS, refs[7]).categories == ["Red category", "Green category",
                                                          TRACKED]
    if read_first:
        assert graph.message(ADDRESS, refs[3]).categories == ["Purple category", TRACKED]


def test_set_keyword_waits_for_a_batch_and_set_keywords_takes_it_along(graph, store, box):
    refs = deliver(store, 6)
    with connect(box) as conn:
        inbox = inbox_of(conn)
        conn.fetch_changes(inbox, None)
        before = batches(graph)
        conn.set_keyword(inbox, refs[0], TRACKED)  # queued: written with the next batch
        assert batches(graph) == before and graph.message(ADDRESS, refs[0]).categories == []
        conn.set_keywords(inbox, refs[1:], TRACKED)
        assert batches(graph) - before == 2  # the lists read again, then the PATCHes
    assert graph.stats["patch"] == 6
    assert all(graph.message(ADDRESS, r).categories == [TRACKED] for r in refs)


@pytest.mark.parametrize("read_first", [True, False])
def test_a_message_deleted_meanwhile_is_skipped(graph, store, box, read_first):
    refs = deliver(store, 5)
    with connect(box) as conn:
        inbox = inbox_of(conn)
        if read_first:
            conn.fetch_changes(inbox, None)
        graph.delete_message(ADDRESS, refs[2])
        conn.set_keywords(inbox, refs, TRACKED)
    left = [r for r in refs if r != refs[2]]
    assert all(graph.message(ADDRESS, r).categories == [TRACKED] for r in left)
    assert graph.stats["patch"] == 4


def test_a_429_inside_a_batch_is_retried_after_its_retry_after(graph, store, box):
    refs = deliver(store, 12, own_categories)
    with connect(box) as conn:
        inbox = inbox_of(conn)
        conn.fetch_changes(inbox, None)
        before = batches(graph)
        graph.throttle(3, retry_after=0, inside_batch=True)
        conn.set_keywords(inbox, refs, TRACKED)
        # the GETs, their 3 throttled items again, the PATCHes
        assert batches(graph) - before == 3
    assert graph.stats["throttled"] == 3 and graph.stats["patch"] == 12
    assert graph.message(ADDRESS, refs[0]).categories == ["Blue category", TRACKED]
    assert all(TRACKED in graph.message(ADDRESS, r).categories for r in refs)


def test_a_long_retry_after_inside_a_batch_is_handed_to_the_engine(graph, store, box):
    refs = deliver(store, 4)
    with connect(box) as conn:
        inbox = inbox_of(conn)
        conn.fetch_changes(inbox, None)
        graph.throttle(1, retry_after=120, inside_batch=True)  # one of the lists' GETs
        with pytest.raises(ConnectorError) as caught:
            conn.set_keywords(inbox, refs, TRACKED)
    assert caught.value.code == "throttled" and caught.value.severity == "mailbox"
    assert caught.value.retry_after == 120
    assert "1 of 4 messages in Inbox." in caught.value.message
    assert graph.stats["patch"] == 3  # the other three were written


def test_other_failures_inside_a_batch_say_what_to_fix_and_how_many(graph, store, box):
    refs = deliver(store, 3)
    with connect(box) as conn:
        inbox = inbox_of(conn)
        conn.fetch_changes(inbox, None)
        graph.access_policy = {"someone.else@org.example"}
        with pytest.raises(ConnectorError) as caught:
            conn.set_keywords(inbox, refs, TRACKED)
        graph.access_policy = None
        conn.set_keywords(inbox, refs, TRACKED)  # not written: tried again when asked again
    assert caught.value.code == "access_policy_missing" and caught.value.severity == "auth"
    assert "3 of 3 messages in Inbox." in caught.value.message
    assert all(graph.message(ADDRESS, r).categories == [TRACKED] for r in refs)


def test_an_expired_token_is_renewed_for_the_batch(graph, store, box):
    refs = deliver(store, 3)
    with connect(box) as conn:
        inbox = inbox_of(conn)
        conn.fetch_changes(inbox, None)
        tokens = graph.stats["token"]
        graph.expire_tokens()
        conn.set_keywords(inbox, refs, TRACKED)
    assert graph.stats["token"] == tokens + 1
    assert all(graph.message(ADDRESS, r).categories == [TRACKED] for r in refs)


def test_the_engine_writes_a_folders_tracked_messages_in_batches(crm, graph, store):
    box = graph_mailbox(store, crm.bob, tracking_option="all")
    refs = deliver(store, 32, own_categories)
    result = sync_mailbox(box.id)
    assert result.status == "success" and result.tracked == 32
    assert graph.stats["patch"] == 31  # one had the category already
    assert graph.message(ADDRESS, refs[7]).categories == ["Red category", "Green category",
                                                          TRACKED]
    assert all(TRACKED.casefold() in {c.casefold() for c in graph.message(ADDRESS, r).categories}
               for r in refs)
