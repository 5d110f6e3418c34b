"""Record lists as a service (``crm.services.lists``): whatever a query string says, a list
page holds only records the reader may read, finds exactly what contains the search text
(``%``, ``_`` and ``\\`` match themselves), never more than a page, and its state and sort
are ones the page offers."""
from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.crm.registry import RECORD_TYPES
from server.crm.services import lists, records
from server.db import db
from server.security import authz

pytestmark = pytest.mark.both_databases

MINE = ["Alpha", "Beta 100%", "gamma_x", "Back\\slash"]
THEIRS = ["Alpha east", "Delta 100%"]
SIZE = 2


@pytest.fixture
def reader(make_user, make_unit):
    """A Salesperson of one unit (who reads their unit's accounts) and another unit's
    accounts they may not read; one of the reader's accounts is inactive."""
    west, east = make_unit("West"), make_unit("East")
    me, other = make_user(unit=west), make_user(unit=east)
    account = RECORD_TYPES["account"]
    for user, names in ((me, MINE), (other, THEIRS)):
        for name in names:
            records.create(authz.principal(user), account, {"name": name})
    records.set_active(authz.principal(me), records.create(authz.principal(me), account,
                                                           {"name": "Alpha retired"}), False)
    db.session.commit()
    return me


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(q=st.text(alphabet=string.printable, max_size=12) | st.sampled_from(
           ["alpha", "100%", "_", "%", "\\", "A_p", "a%a", " beta "]),
       state=st.sampled_from([*lists.STATES, "", "bogus"]),
       sort=st.sampled_from(["name", "modified_on", "city", "phone", "email1", "owner",
                             "description", "", "id; drop table account"]),
       direction=st.sampled_from(["asc", "desc", "", "sideways"]),
       page=st.integers(1, 5))
def test_any_list_request_shows_only_what_it_should(reader, q, state, sort, direction, page):
    p = authz.principal(reader)
    out = lists.record_list(p, RECORD_TYPES["account"], q=q, state=state, sort=sort,
                            direction=direction, page=page, size=SIZE)
    assert out.state == (state if state in lists.STATES else "active")
    assert out.sort in {name for name, _ in out.sort_choices}
    assert out.direction in ("asc", "desc")
    names = {"active": MINE, "inactive": ["Alpha retired"],
             "all": [*MINE, "Alpha retired"]}[out.state]
    wanted = [n for n in names if q.strip().lower()[:200] in n.lower()]
    assert out.total == len(wanted)
    assert out.pages == max(1, -(-len(wanted) // SIZE))
    assert len(out.rows) == max(0, min(SIZE, len(wanted) - (page - 1) * SIZE))
    assert {r.name for r in out.rows} <= set(wanted)
    assert all(authz.can(p, "read", r) for r in out.rows)
