"""The Outlook pane's meeting found in Exchange over EWS: its item id gives the calendar
item's UID (the one appointment per meeting the sync keys by); an id of no meeting gives
none."""
from __future__ import annotations

from server.sync.connectors.ews_items import EwsItemStore
from tests.sync.ews.conftest import ews_account
from tests.sync.item_stores import NEW, default, event_text


def test_the_panes_item_id_gives_the_meetings_uid(exchange):
    account = ews_account(exchange, exchange_version="Exchange2016")
    with EwsItemStore(account) as store:
        calendar = default(store, "appointment")
        made = store.put(calendar, event_text("pane-meeting@contoso.test", "Pricing"))
        assert store.meeting_uid(made.ref) == "pane-meeting@contoso.test"
        contacts = default(store, "contact")
        card = store.put(contacts, NEW["contact"])
        assert store.meeting_uid(card.ref) is None  # not a meeting
