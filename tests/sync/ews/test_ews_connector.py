"""The EWS connector against the fake Exchange endpoint over real HTTP: folders and their
stable ids (rename, move), the SyncFolderItems cursor (paging, new mail after it, a moved
message, category updates, an invalid state), MIME content, categories written with
UpdateItem, sending with a Sent Items copy, impersonation, throttling, sign-in errors, and
waiting for mail (streaming notifications, polling)."""
from __future__ import annotations

import email
import logging
import threading
import time

import pytest

from server.sync.connectors import incoming, outgoing
from server.sync.connectors.base import ConnectorError, SavesCopies
from server.sync.connectors.ews import EWS_NOTICE, EwsConnector, EwsSender
from tests.fakes.ews import serve
from tests.sync.ews.conftest import BOB, ews_account
from tests.sync.world import raw

TRACKED = "Tracked to Regarding"


def by_name(connector) -> dict:
    return {f.name: f for f in connector.list_folders()}


def drain(connector, folder, cursor=None, limit=500):
    """Every page until ``more`` is False: (messages, removed, last cursor, pages)."""
    messages, removed, pages = [], [], 0
    while True:
        changes = connector.fetch_changes(folder, cursor, limit=limit)
        pages += 1
        messages += changes.messages
        removed += changes.removed
        cursor = changes.cursor
        if not changes.more:
            return messages, removed, cursor, pages


def test_registry_and_notice():
    assert incoming("ews") is EwsConnector and outgoing("ews") is EwsSender
    assert "on-premises" in EWS_NOTICE and "Microsoft Graph" in EWS_NOTICE


def test_list_folders_roles_paths_and_parents(exchange, account):
    exchange.create_folder(BOB, "Inbox/Contoso deal")
    exchange.create_folder(BOB, "Inbox/Contoso deal/Legal")
    exchange.create_folder(BOB, "Calendar", folder_class="IPF.Appointment")  # no mail: left out
    with EwsConnector(account) as ews:
        folders = by_name(ews)
    assert {name: f.role for name, f in folders.items()} == {
        "Inbox": "inbox", "Sent Items": "sent", "Drafts": "drafts", "Deleted Items": "trash",
        "Junk Email": "junk", "Inbox/Contoso deal": "other", "Inbox/Contoso deal/Legal": "other"}
    inbox = folders["Inbox"]
    assert inbox.parent_key is None
    assert folders["Inbox/Contoso deal"].parent_key == inbox.key
    assert folders["Inbox/Contoso deal/Legal"].parent_key == folders["Inbox/Contoso deal"].key
    assert inbox.key == exchange.mailbox(BOB).folder("inbox").id  # the EWS folder id


def test_rename_and_move_keep_the_folder_id(exchange, account):
    folder_id = exchange.create_folder(BOB, "Inbox/Contoso")
    with EwsConnector(account) as ews:
        assert by_name(ews)["Inbox/Contoso"].key == folder_id
        exchange.rename_folder(BOB, "Inbox/Contoso", "Contoso deal")
        renamed = by_name(ews)["Inbox/Contoso deal"]
        exchange.move_folder(BOB, "Inbox/Contoso deal", "")
        after_move = by_name(ews)
    moved = after_move["Contoso deal"]
    assert renamed.key == moved.key == folder_id
    assert moved.parent_key is None and "Inbox/Contoso deal" not in after_move


def test_cursor_pages_then_only_new_mail(exchange, account):
    for n in range(5):
        exchange.deliver(BOB, raw(mid=f"m{n}@customer.example", subject=f"Mail {n}"))
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        sizes, cursor = [], None
        while True:
            changes = ews.fetch_changes(inbox, cursor, limit=2)
            sizes.append((len(changes.messages), changes.more))
            cursor = changes.cursor
            if not changes.more:
                break
        assert sizes == [(2, True), (2, True), (1, False)]
        again = ews.fetch_changes(inbox, cursor)
        assert (again.messages, again.more, again.reset) == ([], False, False)
        exchange.deliver(BOB, raw(mid="new@customer.example", subject="New"))
        new = ews.fetch_changes(inbox, cursor)
    assert [email.message_from_bytes(m.raw)["Message-ID"] for m in new.messages] == \
        ["<new@customer.example>"]
    got = new.messages[0]
    assert got.raw == exchange.items_in(BOB, "inbox")[-1].mime  # MIME content, byte for byte
    assert got.arrived_on is not None and got.arrived_on.tzinfo is not None
    assert exchange.operations.count("GetItem") >= 4


def test_replies_are_parsed_from_memory_not_byte_by_byte(exchange, account, monkeypatch):
    """exchangelib 5.6 parses a reply from ``iter_content()``, one byte a step (a generator
    step per byte of every message's MIME); ``ews_session`` parses the body it holds."""
    from requests import Response
    steps: list[int] = []
    real = Response.iter_content

    def iter_content(response, *args, **kwargs):
        for chunk in real(response, *args, **kwargs):
            steps.append(len(chunk))
            yield chunk

    monkeypatch.setattr(Response, "iter_content", iter_content)
    big = raw(mid="big@customer.example", subject="Big", body="x" * 300_000 + "\r\n")
    exchange.deliver(BOB, big)
    with EwsConnector(account) as ews:
        changes = ews.fetch_changes(by_name(ews)["Inbox"], None)
    assert [m.raw for m in changes.messages] == [exchange.items_in(BOB, "inbox")[-1].mime]
    assert 1 not in steps  # read in requests' own chunks (10 KB), once


def test_moved_message_is_a_delete_here_and_a_create_there(exchange, account):
    exchange.create_folder(BOB, "Inbox/Contoso deal")
    ref = exchange.deliver(BOB, raw(mid="deal@x.example"))
    with EwsConnector(account) as ews:
        folders = by_name(ews)
        inbox, deal = folders["Inbox"], folders["Inbox/Contoso deal"]
        _, _, inbox_cursor, _ = drain(ews, inbox)
        _, _, deal_cursor, _ = drain(ews, deal)
        new_ref = exchange.move(BOB, ref, "Inbox/Contoso deal")
        left = ews.fetch_changes(inbox, inbox_cursor)
        arrived = ews.fetch_changes(deal, deal_cursor)
    assert left.messages == [] and left.removed == [ref]
    assert [m.ref for m in arrived.messages] == [new_ref] and new_ref != ref
    assert b"deal@x.example" in arrived.messages[0].raw


def test_category_written_once_and_reported_as_an_update(exchange, account):
    ref = exchange.deliver(BOB, raw(mid="c@x.example"), categories=["Red category"])
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        first = ews.fetch_changes(inbox, None)
        assert first.messages[0].keywords == ("Red category",)
        ews.set_keyword(inbox, ref, TRACKED)
        updates = exchange.operations.count("UpdateItem")
        ews.set_keyword(inbox, ref, TRACKED)  # already there: no second UpdateItem
        assert exchange.operations.count("UpdateItem") == updates == 1
        changed = ews.fetch_changes(inbox, first.cursor)
    assert exchange.mailbox(BOB).items[ref].categories == ["Red category", TRACKED]
    assert [m.keywords for m in changed.messages] == [("Red category", TRACKED)]


def test_a_batch_of_categories_is_one_get_and_one_update_keeping_their_own(exchange, account):
    own = {0: ["Red category"], 3: ["Blue category", "Green category"], 5: ["tracked to regarding"]}
    refs = [exchange.deliver(BOB, raw(mid=f"b{n}@x.example"), categories=own.get(n))
            for n in range(30)]
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        drain(ews, inbox)
        before = len(exchange.operations)
        ews.set_keywords(inbox, refs, TRACKED)
        assert exchange.operations[before:] == ["GetItem", "UpdateItem"]
    items = exchange.mailbox(BOB).items
    assert items[refs[0]].categories == ["Red category", TRACKED]
    assert items[refs[3]].categories == ["Blue category", "Green category", TRACKED]
    assert items[refs[5]].categories == ["tracked to regarding"]  # had it (other case)
    assert all(items[r].categories == [TRACKED] for n, r in enumerate(refs) if n not in own)


def test_a_batch_skips_a_message_gone_meanwhile(exchange, account):
    refs = [exchange.deliver(BOB, raw(mid=f"g{n}@x.example")) for n in range(4)]
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        drain(ews, inbox)
        moved = exchange.move(BOB, refs[1], "deleteditems")
        ews.set_keywords(inbox, refs, TRACKED)
    items = exchange.mailbox(BOB).items
    assert all(items[r].categories == [TRACKED] for r in refs if r != refs[1])
    assert items[moved].categories == []  # moved away: not written


def test_a_busy_server_during_a_batch_backs_off(exchange, account):
    refs = [exchange.deliver(BOB, raw(mid=f"s{n}@x.example")) for n in range(3)]
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        exchange.busy, exchange.back_off_ms = 1, 45000
        with pytest.raises(ConnectorError) as caught:
            ews.set_keywords(inbox, refs, TRACKED)
    assert caught.value.code == "server_busy" and caught.value.retry_after == 45
    assert all(exchange.mailbox(BOB).items[r].categories == [] for r in refs)


def test_user_setting_the_category_later_is_seen_but_other_updates_are_not(exchange, account):
    plain = exchange.deliver(BOB, raw(mid="plain@x.example"))
    tagged = exchange.deliver(BOB, raw(mid="tagged@x.example"))
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        cursor = ews.fetch_changes(inbox, None).cursor
        exchange.set_categories(BOB, tagged, [TRACKED])
        exchange.set_categories(BOB, plain, [])  # an update that leaves no category
        changes = ews.fetch_changes(inbox, cursor)
    assert [(m.ref, m.keywords) for m in changes.messages] == [(tagged, (TRACKED,))]


def test_an_invalid_sync_state_starts_over(exchange, account):
    exchange.deliver(BOB, raw(mid="a@x.example"))
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        changes = ews.fetch_changes(inbox, '{"state":"bm90IGEgc3RhdGU="}')
        unreadable = ews.fetch_changes(inbox, "not json")
    assert changes.reset and len(changes.messages) == 1
    assert unreadable.reset and len(unreadable.messages) == 1


def test_a_message_gone_is_a_message_error(exchange, account):
    ref = exchange.deliver(BOB, raw(mid="gone@x.example"))
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        assert b"gone@x.example" in ews.fetch_message(inbox, ref)
        exchange.move(BOB, ref, "deleteditems")
        with pytest.raises(ConnectorError) as caught:
            ews.fetch_message(inbox, ref)
        with pytest.raises(ConnectorError) as on_write:
            ews.set_keyword(inbox, ref, TRACKED)
    assert caught.value.severity == on_write.value.severity == "message"


def test_send_keeps_a_copy_in_sent_items_and_bcc_goes_separately(exchange, account):
    mime = raw(sender="Bob Seller <bob@org.example>", to="ann@customer.example",
               mid="out@org.example", subject="Quote", Cc="bo@customer.example")
    with EwsSender(account) as sender:
        sender.verify(BOB, BOB)
        assert sender.send(mime, BOB, ["ann@customer.example", "bo@customer.example",
                                        "boss@org.example"]) == {}
    assert exchange.sent == [{"mailbox": BOB, "mime": mime, "bcc": ["boss@org.example"]}]
    assert [i.mime for i in exchange.items_in(BOB, "sentitems")] == [mime]
    assert "CreateItem" in exchange.operations
    assert not issubclass(EwsConnector, SavesCopies)  # no second copy from the outgoing flow


def test_impersonation_reads_another_mailbox_only_when_allowed(exchange):
    exchange.mailbox("ann@org.example")
    exchange.deliver("ann@org.example", raw(mid="ann@x.example"))
    service = ews_account(exchange, address="ann@org.example", username="ORG\\crm-service",
                          password="service secret", impersonation=True)
    with EwsConnector(service) as ews:
        inbox = by_name(ews)["Inbox"]
        assert len(ews.fetch_changes(inbox, None).messages) == 1
    bob_acting = ews_account(exchange, address="ann@org.example", impersonation=True)
    with pytest.raises(ConnectorError) as caught:
        with EwsConnector(bob_acting) as ews:
            ews.list_folders()
    assert (caught.value.code, caught.value.severity) == ("impersonation_denied", "auth")


def test_unknown_mailbox_is_an_auth_error(exchange):
    service = ews_account(exchange, address="nobody@org.example", username="ORG\\crm-service",
                          password="service secret", impersonation=True)
    with pytest.raises(ConnectorError) as caught:
        with EwsConnector(service) as ews:
            ews.list_folders()
    assert (caught.value.code, caught.value.severity) == ("no_mailbox", "auth")


@pytest.mark.parametrize("auth_type", ["basic", None])
def test_a_wrong_password_is_an_auth_error(exchange, auth_type):
    account = ews_account(exchange, password="wrong", auth_type=auth_type)
    with pytest.raises(ConnectorError) as caught:
        with EwsConnector(account) as ews:
            ews.list_folders()
    assert (caught.value.code, caught.value.severity) == ("auth_failed", "auth")
    assert "wrong" not in caught.value.message


def test_server_busy_backs_off_as_the_server_asks(exchange, account):
    exchange.deliver(BOB, raw(mid="b@x.example"))
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        exchange.busy, exchange.back_off_ms = 1, 45000
        with pytest.raises(ConnectorError) as caught:
            ews.fetch_changes(inbox, None)
        assert (caught.value.code, caught.value.severity) == ("server_busy", "mailbox")
        assert caught.value.retry_after == 45
        assert len(ews.fetch_changes(inbox, None).messages) == 1  # fine once it is not busy


def test_server_busy_while_connecting_is_still_a_back_off(exchange, account):
    exchange.busy, exchange.back_off_ms = 1, 20000
    with pytest.raises(ConnectorError) as caught:
        with EwsConnector(account):
            pass
    assert exchange.operations == ["ConvertId"]  # the version probe met the busy server
    assert (caught.value.code, caught.value.retry_after) == ("server_busy", 20)


def test_a_server_that_is_gone_is_a_mailbox_error(exchange):
    served = serve(exchange)
    url = served.url
    served.stop()
    account = ews_account(exchange, ews_url=url)
    with pytest.raises(ConnectorError) as caught:
        with EwsConnector(account) as ews:
            ews.list_folders()
    assert caught.value.severity == "mailbox" and caught.value.retry_after


def test_wait_for_changes_polls_from_the_last_state(exchange):
    account = ews_account(exchange, streaming=False)
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        assert ews.wait_for_changes([inbox], 0) == set()  # not read yet: nothing watched
        cursor = ews.fetch_changes(inbox, None).cursor
        assert ews.wait_for_changes([inbox], 0) == set()
        exchange.deliver(BOB, raw(mid="w@x.example"))
        assert ews.wait_for_changes([inbox], 5) == {inbox.key}
        # Waiting stored nothing: the change is still there for the next fetch.
        assert len(ews.fetch_changes(inbox, cursor).messages) == 1


def test_no_message_content_or_password_in_the_logs(exchange, account, caplog):
    exchange.deliver(BOB, raw(mid="secret@x.example", body="Confidential body text\r\n"))
    with caplog.at_level(logging.DEBUG):
        with EwsConnector(account) as ews:
            inbox = by_name(ews)["Inbox"]
            ews.fetch_changes(inbox, None)
    assert "Confidential body text" not in caplog.text
    assert "Q29uZmlkZW50aWFs" not in caplog.text  # nor its base64
    assert account.password not in caplog.text


@pytest.mark.parametrize("settings, code", [({"auth_type": "kerberos"}, "bad_setting"),
                                            ({"auth_type": "oauth"}, "oauth_not_configured"),
                                            ({"exchange_version": "Exchange1999"}, "bad_setting")])
def test_profile_mistakes_are_auth_errors_a_person_fixes(exchange, settings, code):
    with pytest.raises(ConnectorError) as caught:
        with EwsConnector(ews_account(exchange, **settings)):
            pass
    assert (caught.value.code, caught.value.severity) == (code, "auth")
    assert exchange.operations == []  # nothing was sent


def test_a_known_version_skips_the_probe(exchange, account):
    known = ews_account(exchange, exchange_version="Exchange2016")
    with EwsConnector(known) as ews:
        assert "Inbox" in by_name(ews)
    assert "ConvertId" not in exchange.operations


def _deliver_once_streaming(exchange, mime):
    """Deliver ``mime`` once the connector's GetStreamingEvents is held open by the fake."""
    def run():
        for _ in range(2000):
            if "GetStreamingEvents" in exchange.operations:
                break
            time.sleep(0.005)
        exchange.deliver(BOB, mime)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_streaming_notification_ends_the_wait(exchange, account):
    with EwsConnector(account) as ews:
        folders = by_name(ews)
        inbox = folders["Inbox"]
        cursor = ews.fetch_changes(inbox, None).cursor
        thread = _deliver_once_streaming(exchange, raw(mid="push@x.example"))
        assert ews.wait_for_changes([inbox, folders["Sent Items"]], 600) == {inbox.key}
        thread.join()
        assert len(ews.fetch_changes(inbox, cursor).messages) == 1
    assert exchange.operations.count("Subscribe") == 1 and "GetStreamingEvents" in exchange.operations
    assert "Unsubscribe" in exchange.operations and exchange.subscriptions == {}


def test_the_stream_keeps_changes_that_come_between_short_waits(exchange, account):
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        ews.fetch_changes(inbox, None)
        assert ews.wait_for_changes([inbox], 0.1) == set()  # subscribed, nothing yet
        exchange.deliver(BOB, raw(mid="between@x.example"))
        assert ews.wait_for_changes([inbox], 30) == {inbox.key}
        exchange.deliver(BOB, raw(mid="next@x.example"))
        assert ews.wait_for_changes([inbox], 30) == {inbox.key}
    assert exchange.operations.count("Subscribe") == 1  # one subscription for the session
    assert exchange.subscriptions == {}  # closed with the session


def test_mail_before_the_subscription_is_not_missed(exchange, account):
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        ews.fetch_changes(inbox, None)
        exchange.deliver(BOB, raw(mid="early@x.example"))
        # The subscription never hears of this mail: the check after subscribing finds it.
        assert ews.wait_for_changes([inbox], 600) == {inbox.key}
    assert "Subscribe" in exchange.operations


def test_without_streaming_the_wait_polls(exchange, account):
    exchange.streaming = False
    with EwsConnector(account) as ews:
        inbox = by_name(ews)["Inbox"]
        ews.fetch_changes(inbox, None)
        exchange.deliver(BOB, raw(mid="polled@x.example"))
        assert ews.wait_for_changes([inbox], 600) == {inbox.key}
    assert "GetStreamingEvents" not in exchange.operations


def test_error_details_leave_quoted_xml_out():
    from exchangelib.errors import MalformedResponseError

    from server.sync.connectors.ews_errors import detail
    exc = MalformedResponseError("No Items elements in ResponseMessage (<m:Items><t:MimeContent>"
                                 "U2VjcmV0</t:MimeContent></m:Items>)")
    assert detail(exc) == "No Items elements in ResponseMessage"
    assert detail(MalformedResponseError("")) == "MalformedResponseError"
