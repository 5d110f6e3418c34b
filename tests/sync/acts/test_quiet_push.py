"""A quiet item run reads next to nothing, and still pushes everything the whole-selection
push did (against Radicale): a run with nothing changed loads no item link and no record,
whatever the number of synced records; a changed record loads its own link alone; and each
way a record reaches or leaves the server still works after a complete push (a record
changed, deleted in the CRM, leaving or joining the filter by a field, by its owner, by a
share, by the filter being edited; an item deleted on the server that the filter still
takes comes back)."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event, select

from server.crm.models import Contact
from server.crm.services import records as record_service
from server.db import db
from server.security import authz
from server.sync.acts.run import sync_items
from server.sync.models import ItemLink, ItemPushMark, SyncFilter
from tests.sync.acts.conftest import RadicaleSide


@pytest.fixture
def side(radicale):
    if not radicale.running:
        radicale.start()
    return RadicaleSide(radicale)


def _contact(user, name: str, **fields) -> Contact:
    contact = Contact(first_name=name, last_name="Cole", full_name=f"{name} Cole",
                      owner_user_id=user.id, owning_business_unit_id=user.business_unit_id,
                      **fields)
    db.session.add(contact)
    return contact


@contextmanager
def loads():
    """Counts the item links and contacts the ORM loads from the database meanwhile."""
    counts = {"links": 0, "contacts": 0}

    def link(*_):
        counts["links"] += 1

    def contact(*_):
        counts["contacts"] += 1
    event.listen(ItemLink, "load", link)
    event.listen(Contact, "load", contact)
    db.session.expunge_all()  # what the run needs, it loads itself
    try:
        yield counts
    finally:
        event.remove(ItemLink, "load", link)
        event.remove(Contact, "load", contact)


def _names(side, user) -> set[str]:
    with side.client(user) as client:
        return {line[3:].strip() for item in side.server(client, "contact").items().values()
                for line in item.data.splitlines() if line.startswith("FN:")}


def test_a_quiet_run_loads_nothing_whatever_the_number_of_records(side, make_user):
    ann = make_user("ann@contoso.test")
    box = side.mailbox(ann)
    for n in range(40):
        _contact(ann, f"Person{n}")
    db.session.commit()
    box_id = box.id
    assert sync_items(box_id, kinds=("contact",)).pushed == 40
    mark = db.session.scalar(select(ItemPushMark).where(ItemPushMark.mailbox_id == box_id))
    assert mark.kind == "contact"
    # The next pull reads the push's own writes back once (their versions stored: skipped).
    assert sync_items(box_id, kinds=("contact",)).pushed == 0
    with loads() as counts:
        result = sync_items(box_id, kinds=("contact",))
    assert result.pushed == 0
    assert counts == {"links": 0, "contacts": 0}
    one = db.session.scalar(select(Contact).where(Contact.first_name == "Person7"))
    one.job_title = "Buyer"
    db.session.commit()
    with loads() as counts:
        result = sync_items(box_id, kinds=("contact",))
    assert result.pushed == 1
    assert counts["links"] == 1  # its own link, not the other 39
    sync_items(box_id, kinds=("contact",))  # its write read back
    with loads() as counts:
        assert sync_items(box_id, kinds=("contact",)).pushed == 0
    assert counts == {"links": 0, "contacts": 0}


def test_every_way_in_and_out_still_pushes_after_a_complete_push(side, make_user, make_unit):
    ann = make_user("ann@contoso.test")
    bob = make_user("bob@contoso.test")
    box = side.mailbox(ann)
    elsewhere = make_unit("Elsewhere")
    carl = make_user("carl@contoso.test", unit=elsewhere)
    kept, changed, deleted = _contact(ann, "Kept"), _contact(ann, "Changed"), _contact(ann, "Gone")
    moved = _contact(ann, "Moved")
    arriving = _contact(bob, "Arriving")
    shared = _contact(carl, "Shared")
    db.session.commit()
    sync_items(box.id, kinds=("contact",))
    assert _names(side, ann) == {"Kept Cole", "Changed Cole", "Gone Cole", "Moved Cole"}

    def run() -> set[str]:
        assert db.session.scalar(select(ItemPushMark.id).where(
            ItemPushMark.mailbox_id == box.id)) is not None  # a mark to start from
        sync_items(box.id, kinds=("contact",))
        return _names(side, ann)

    changed.job_title = "Buyer"
    db.session.commit()
    assert run() == {"Kept Cole", "Changed Cole", "Gone Cole", "Moved Cole"}
    with side.client(ann) as client:
        cards = side.server(client, "contact").items()
        assert "TITLE:Buyer" in next(i.data for i in cards.values() if "FN:Changed" in i.data)
    db.session.delete(deleted)
    db.session.commit()
    assert run() == {"Kept Cole", "Changed Cole", "Moved Cole"}
    p_ann = authz.principal(ann)
    record_service.assign(p_ann, moved, bob)  # left by its owner
    db.session.commit()
    assert run() == {"Kept Cole", "Changed Cole"}
    record_service.assign(authz.principal(bob), arriving, ann)  # joined by its owner
    db.session.commit()
    assert run() == {"Kept Cole", "Changed Cole", "Arriving Cole"}
    # A filter on a field: the record that no longer matches leaves, then comes back.
    db.session.add(SyncFilter(user_id=ann.id, kind="contact", name="Not buyers", owner="any",
                              conditions=[["job_title", "ne", "Buyer"]]))
    db.session.commit()  # the filter edited: read in full; Bob's "Moved" is readable: in
    assert run() == {"Kept Cole", "Arriving Cole", "Moved Cole"}
    changed.job_title = "Head of buying"
    kept.job_title = "Buyer"
    db.session.commit()
    assert run() == {"Changed Cole", "Arriving Cole", "Moved Cole"}
    # Shared with Ann (a unit she cannot read): the share alone brings it.
    record_service.share(authz.principal(carl), shared, ann, {"read"})
    db.session.commit()
    assert run() == {"Changed Cole", "Arriving Cole", "Moved Cole", "Shared Cole"}


def test_an_item_deleted_on_the_server_that_the_filter_takes_comes_back(side, make_user):
    """Bob owns it (so Ann's deleting it on her server does not delete it in the CRM); her
    filter takes everything she reads: the next push puts it back."""
    ann = make_user("ann@contoso.test")
    bob = make_user("bob@contoso.test")
    box = side.mailbox(ann)
    db.session.add(SyncFilter(user_id=ann.id, kind="contact", name="Everyone", owner="any"))
    _contact(bob, "Bobs")
    db.session.commit()
    sync_items(box.id, kinds=("contact",))
    with side.client(ann) as client:
        book = side.server(client, "contact")
        [card] = book.items().values()
        book.store.delete(book.collection, card.ref)
    sync_items(box.id, kinds=("contact",))
    assert _names(side, ann) == {"Bobs Cole"}
    assert db.session.scalar(select(Contact.id).where(Contact.first_name == "Bobs"))
