"""The activity timeline of a record: every activity regarding it or in which it is a party,
newest first, with keyset paging, filtered by the reader's privileges in SQL.

A page is found in two steps in one statement: each way an activity can concern the record
(regarding it, the record being a party) is its own keyset-ordered branch limited to one
page of ids, so the database walks an index in timeline order instead of sorting every
activity of a busy record (``activity(regarding_<type>_id, occurred_on, id)`` for what is
regarding it; ``activity_party(<type>_id, occurred_on, activity_id)`` for what it is a party
to, each party row carrying its activity's time); the union of the branches is sorted and
cut, and only that page is loaded with its type's columns. (An ``OR`` of the two conditions
made both databases gather and sort all 10,000 activities of a busy account: see
bench/README.md.)

*With related records* (Dynamics' roll-up, on by default for accounts): an account's
timeline also shows what concerns its contacts, opportunities and cases, a contact's what
concerns its opportunities and cases. Their ids are looked up first and each related record
is one more branch of the same shape, so paging stays a walk down an index per branch."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import (ARRAY, Integer, and_, any_, bindparam, cast, exists, false, func, literal,
                        or_, select, union, union_all)
from sqlalchemy.orm import aliased, defer, joinedload, lazyload, with_polymorphic
from sqlalchemy.sql.elements import BindParameter

from server.crm.activities import (PARTY_COLUMNS, REGARDING_COLUMNS, Activity, ActivityParty,
                                   Appointment, Email, Task)
from server.crm.models import Case, Contact, Opportunity
from server.db import cached_statement, db, prepared_statement
from server.security import authz
from server.security.authz import Principal

AnyActivity = with_polymorphic(Activity, "*")

# What no timeline shows (the record page's list, the API's pages leave bodies out): loaded
# only if read. The owner is shown by its id, so the user row is not joined; the parties are
# (one statement for the page instead of two). Fewer columns cost less on each side:
# PostgreSQL plans one join less, psycopg describes 58 columns, not 87 (bench/README.md,
# "Issue 17 goal 2: the timeline page prepared").
NOT_SHOWN = (Email.html_body, Email.text_body, Email.internet_headers, Email.to_recipients,
             Email.references, Email.conversation_index, Email.dedupe_key, Email.error,
             Email.delivery_attempts, Email.next_attempt_on, Email.receiving_mailbox_id,
             Appointment.recurrence_rule, Appointment.recurrence_exceptions,
             Appointment.time_zone, Appointment.reminder_minutes, Appointment.show_as,
             Appointment.sensitivity, Appointment.categories, Task.reminder_minutes,
             Task.sensitivity, Task.categories, Task.task_uid)


@dataclass
class Page:
    items: list[Activity]
    next_cursor: str | None
    related: bool = False  # whether the related records' activities are included


def encode_cursor(activity: Activity) -> str:
    return f"{activity.occurred_on.timestamp():.6f}_{activity.id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    from datetime import timezone
    stamp, _, ident = cursor.partition("_")
    at, number = datetime.fromtimestamp(float(stamp), timezone.utc), int(ident)
    if not 0 < number < 2**31:  # ids are 32-bit columns: anything else is no cursor of ours
        raise ValueError("cursor id out of range")
    return at, number


def _after(at: datetime, ident: int, occurred=Activity.occurred_on, key=Activity.id):
    """Strictly older than the cursor in (``occurred``, ``key``) order; the upper bound on
    ``occurred`` alone lets the index range start at the cursor."""
    at, ident = bindparam("after_at", at, type_=occurred.type), bindparam("after_id", ident)
    return and_(occurred <= at, or_(occurred < at, and_(occurred == at, key < ident)))


# The roll-up: record type -> (related record type, the related record's column that
# points at the record). Activities about those records join the record's timeline.
ROLL_UP = {
    "account": (("contact", Contact.parent_account_id),
                ("opportunity", Opportunity.customer_account_id),
                ("case", Case.customer_account_id)),
    "contact": (("opportunity", Opportunity.customer_contact_id),
                ("case", Case.customer_contact_id)),
}
ROLLED_UP_BY_DEFAULT = frozenset({"account"})


def rolls_up(record_type: str, related: bool | None) -> bool:
    """Whether a timeline of ``record_type`` includes related records: as asked, else the
    type's default; never for a type without related records."""
    if record_type not in ROLL_UP:
        return False
    return record_type in ROLLED_UP_BY_DEFAULT if related is None else related


# Related records of one kind up to this many get a branch each (an index walk in timeline
# order, cut at one page); more share one branch over all their ids.
BRANCH_EACH_UP_TO = 25


# Another of an activity's party rows (made once: an alias costs more to build than a page).
_EARLIER = aliased(ActivityParty, name="earlier")


@dataclass(frozen=True)
class Way:
    """One way an activity concerns a record (or one of several of a type): ``regarding``
    it (``column`` of ``activity``) or with it as a party (``column`` of
    ``activity_party``)."""
    party: bool
    column: str
    ids: int | tuple[int, ...] | BindParameter

    name: str = "way"  # its bind parameter's name, unique in a page's statement

    def matches(self, entity):
        column = getattr(entity, self.column)
        if isinstance(self.ids, BindParameter):  # the caller's own (the pane's subject_id)
            return column == self.ids
        if isinstance(self.ids, tuple):
            return column.in_(bindparam(self.name, self.ids, expanding=True))
        return column == bindparam(self.name, self.ids)

    @property
    def shape(self) -> tuple:
        """What the statement holds of this way (its ids are bind parameters)."""
        return self.party, self.column, isinstance(self.ids, tuple)

    def where(self):
        """The condition on ``activity`` alone (the one-query plan)."""
        if not self.party:
            return self.matches(Activity)
        return Activity.id.in_(select(ActivityParty.activity_id).where(self.matches(ActivityParty)))

    def branch(self, common: list, after: tuple[datetime, int] | None, limit: int):
        """(id, occurred_on) of the newest ``limit`` activities this way, newest first: an
        index walk in timeline order (``activity(regarding_<type>_id, occurred_on, id)``, or
        ``activity_party(<type>_id, occurred_on, activity_id)`` with each activity probed
        once for the reader's scope)."""
        if not self.party:
            query = select(Activity.id, Activity.occurred_on).where(self.matches(Activity), *common)
            if after is not None:
                query = query.where(_after(*after))
            return query.order_by(Activity.occurred_on.desc(), Activity.id.desc()).limit(limit)
        party, earlier = ActivityParty, _EARLIER
        # An activity with the record as a party twice (to and cc) is one entry: the first.
        first = ~exists().where(earlier.activity_id == party.activity_id,
                                earlier.occurred_on == party.occurred_on,
                                self.matches(earlier), earlier.id < party.id)
        query = (select(party.activity_id.label("id"), party.occurred_on.label("occurred_on"))
                 .join(Activity, Activity.id == party.activity_id)
                 .where(self.matches(party), first, *common))
        if after is not None:
            query = query.where(_after(*after, party.occurred_on, party.activity_id))
        return query.order_by(party.occurred_on.desc(), party.activity_id.desc()).limit(limit)


def _ways(record_type: str, ids: int | tuple[int, ...]) -> list[Way]:
    """Each way an activity concerns a record of ``record_type`` whose id is ``ids`` (or
    one of them)."""
    out = []
    if record_type in REGARDING_COLUMNS:
        out.append(Way(False, REGARDING_COLUMNS[record_type], ids))
    if record_type in PARTY_COLUMNS:
        out.append(Way(True, PARTY_COLUMNS[record_type], ids))
    return out


def related_ids(record_type: str, record_id: int) -> dict[str, list[int]]:
    """The ids of the record's related records by type, in one statement. (Only to find
    activities, which are filtered by what the reader may read.)"""
    parts = ROLL_UP.get(record_type, ())
    if not parts:
        return {}
    found = db.session.execute(union_all(*(
        select(literal(kind).label("kind"), column.class_.id.label("id")).where(column == record_id)
        for kind, column in parts)))
    out: dict[str, list[int]] = {}
    for kind, ident in found:
        out.setdefault(kind, []).append(ident)
    return out


def _all_ways(record_type: str, record_id: int, related: bool) -> list[Way]:
    """The record's own ways and, with ``related``, its related records' (their ids looked
    up first: given as values, every branch is an index walk, while a sub-select in each
    made both databases scan the whole activity table for a kind with no record)."""
    out = _ways(record_type, record_id)
    for kind, ids in (related_ids(record_type, record_id) if related else {}).items():
        if len(ids) <= BRANCH_EACH_UP_TO:
            for ident in ids:
                out += _ways(kind, ident)
        else:
            out += _ways(kind, tuple(ids))
    return [replace(way, name=f"way_{n}") for n, way in enumerate(out)]


# How a page's ids are found. "branches": each way an activity concerns the record is its
# own index walk cut at one page, then the union is sorted and cut; "one_query": one OR of
# the ways, sorted and cut (the plan before the branches). Chosen per database from
# bench/resolve.py's figures (bench/README.md, "Issue 17 goal 2"), here in one place: the
# branches on both. One query was 2-3x dearer on SQLite for busy records; on PostgreSQL it
# was 10-20% cheaper for a record with 2,000 party entries but dearer for one whose
# activities are regarding it, and for a record with few activities (most records) it
# walked the whole activity table newest first: 235-250 ms of CPU instead of 16-21.
# Since each party row carries its activity's time (0016_pgtimeline) the party branch is an
# index walk too (bench/README.md, "the party index and the page built once").
PLANS = ("branches", "one_query")
PLAN_BY_DIALECT = {"sqlite": "branches", "postgresql": "branches"}


def plan_for(dialect: str) -> str:
    """The plan used on a database of this dialect."""
    return PLAN_BY_DIALECT.get(dialect, "branches")


def page_ids(p: Principal, record_type: str, record_id: int, *, limit: int,
             types: tuple[str, ...] | None = None, after: tuple[datetime, int] | None = None,
             related: bool = False, plan: str | None = None, ways: list[Way] | None = None):
    """A SELECT of the ids of one timeline page (``limit`` rows), newest first; with
    ``related``, the roll-up of the record's related records too. ``plan``: one of
    ``PLANS`` (for a benchmark's comparison); by default the database's. The ways' ids and
    the cursor are named bind parameters holding their values (``timeline`` builds the
    statement once per shape and passes the values)."""
    plan = plan or plan_for(db.engine.dialect.name)
    common = [authz.scope(p, Activity, "read")]
    if types:
        common.append(Activity.activity_type.in_(types))
    order = (Activity.occurred_on.desc(), Activity.id.desc())
    ways = _all_ways(record_type, record_id, related) if ways is None else ways
    if not ways:
        return select(Activity.id).where(false())
    if plan == "one_query":
        query = select(Activity.id).where(or_(*(w.where() for w in ways)), *common)
        if after is not None:
            query = query.where(_after(*after))
        return query.order_by(*order).limit(limit)
    # SQLite allows ORDER BY/LIMIT in a compound SELECT only inside a subquery.
    branches = [w.branch(common, after, limit).subquery() for w in ways]
    merged = union(*(select(b.c.id, b.c.occurred_on) for b in branches)).subquery()
    return select(merged.c.id).order_by(merged.c.occurred_on.desc(), merged.c.id.desc()).limit(limit)


def _in_page(column, ids):
    """``column`` is one of the page's ``ids`` (a SELECT). On PostgreSQL the ids are first
    gathered into an array (an init plan of their own), so the planner joins the five
    tables of the polymorphic load without the page's branches among them: planning, which
    is most of what the first page costs there, fell from 2.5 to 1.6 ms (bench/README.md,
    "Issue 17 goal 2: the party index")."""
    if db.engine.dialect.name == "postgresql":
        return column == any_(cast(select(func.array_agg(ids.subquery().c.id)).scalar_subquery(),
                                   ARRAY(Integer)))
    return column.in_(ids)


def _preparable(plan: str, ways: list[Way]) -> bool:
    """Whether the page statement runs prepared on PostgreSQL (``db.prepared_statement``),
    planned once for every record: only the branches with one record each (every branch an
    index walk in timeline order cut at one page, whatever the record; measured with
    ``plan_cache_mode = force_generic_plan`` on party-heavy, regarding-heavy and quiet
    accounts: 0.06-0.22 ms of execution, as the custom plans). Not the one-query plan (its
    generic plan walked the whole table for a quiet record) nor a branch over many related
    records' ids (an ``IN`` list, whose best plan depends on the values)."""
    return plan == "branches" and not any(isinstance(w.ids, tuple) for w in ways)


def timeline(p: Principal, record_type: str, record_id: int, *, cursor: str | None = None,
             limit: int = 25, types: tuple[str, ...] | None = None,
             related: bool | None = None, plan: str | None = None) -> Page:
    """One page of the record's timeline; ``related`` None: the type's default roll-up;
    ``plan``: see ``page_ids``."""
    after = None
    if cursor:
        try:
            after = decode_cursor(cursor)
        except (ValueError, OverflowError):
            after = None
    plan = plan or plan_for(db.engine.dialect.name)
    ways = _all_ways(record_type, record_id, rolls_up(record_type, related))

    def build():
        ids = page_ids(p, record_type, record_id, limit=limit + 1, types=types, after=after,
                       plan=plan, ways=ways)
        query = (select(AnyActivity)
                 .where(_in_page(AnyActivity.id, ids))
                 .options(joinedload(AnyActivity.parties), lazyload(AnyActivity.owner_user),
                          *(defer(getattr(getattr(AnyActivity, c.class_.__name__), c.key))
                            for c in NOT_SHOWN))
                 .order_by(AnyActivity.occurred_on.desc(), AnyActivity.id.desc()))
        return prepared_statement(query, generic=True) if _preparable(plan, ways) else query
    # Built once per shape (building it cost more than running it on SQLite); the values go
    # as parameters.
    query = cached_statement(("timeline page", plan, tuple(w.shape for w in ways), types,
                              after is not None, limit, p.scope_key), build)
    values = {w.name: w.ids for w in ways}
    if after is not None:
        values.update(after_at=after[0], after_id=after[1])
    items = list(db.session.scalars(query, values).unique())
    more = len(items) > limit
    items = items[:limit]
    return Page(items, encode_cursor(items[-1]) if more and items else None,
                rolls_up(record_type, related))
