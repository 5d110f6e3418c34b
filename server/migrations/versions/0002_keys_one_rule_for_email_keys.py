"""email keys stored under the one rule of server.mailkeys

Revision ID: 0002_keys
Revises: 0001
Create Date: 2026-12-05 00:50:00

Tracking and the sync engine used to normalize email keys by two different rules; they now
share ``server.mailkeys``. Keys stored under the old tracking rules are rewritten as the one
rule writes them, so lookups keep finding them:

* Message-IDs (``email.message_id``, ``dedupe_key``, ``in_reply_to``, ``references``,
  ``track_request.internet_message_id``, ``message_decision.identity``): comments and a
  second ``<...>`` were kept by the old rule (only values with ``(``, ``<`` or ``>`` can
  change).
* ``email.conversation_id``: recomputed from the stored Thread-Index
  (``email.conversation_index``) by the strict rule correlation always looked it up by
  (the old one missed headers without their base64 padding).
* The address index (``email_address``): rebuilt from the records' address columns, which
  hold what users typed (IDNA 2008 writes ``straße`` as ``xn--strae-oqa``, not ``strasse``).
* Stored addresses with needless quotes (``"ann"@x`` is ``ann@x``): party, sender, mailbox
  and blocklist addresses and decisions' senders.

Nothing is lost: a value the rule cannot read (None), or one whose new form another row
holds already where keys are unique, is left as it is. The rules are the application's
pure ``server.mailkeys`` (it imports nothing): re-running them is harmless, as every
normalization is idempotent. No schema change; downgrade has nothing to undo.
"""
from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from server.mailkeys import conversation_id, normalize_address, normalize_message_id

# revision identifiers, used by Alembic.
revision = '0002_keys'
down_revision = '0001'
branch_labels = None
depends_on = None

BATCH = 2000


def _message_id(value: str) -> str | None:
    return normalize_message_id(value)


def _dedupe_key(value: str) -> str | None:
    """``identity`` or ``identity#owner:N`` (two activities for mail between two users)."""
    identity, mark, owner = value.partition("#owner:")
    new = normalize_message_id(identity)
    return new and f"{new}{mark}{owner}"


def _references(value: str) -> str | None:
    ids = [normalize_message_id(item) or item for item in value.split()]
    return " ".join(dict.fromkeys(ids)) or None


def _renormalize(table: str, column: str, rule: Callable[[str], str | None], *,
                 marks: str, unique_with: tuple[str, ...] | None = None) -> None:
    """Rewrite ``column`` by ``rule`` where it differs, in rows holding one of the
    characters ``marks`` (the only ones the one rule writes differently). ``unique_with``: the columns ``column`` is
    unique together with (``()``: unique alone); a row whose new value is taken keeps its."""
    conn = op.get_bind()
    t = sa.table(table, sa.column("id"), sa.column(column), *(sa.column(c) for c in unique_with or ()))
    col = t.c[column]
    rows = conn.execute(sa.select(t).where(sa.or_(*(col.contains(m, autoescape=True) for m in marks)))
                        .order_by(t.c.id)).all()
    for row in rows:
        old = row._mapping[column]
        new = rule(old)
        if new is None or new == old:
            continue
        if unique_with is not None:
            same_scope = [t.c[c] == row._mapping[c] for c in unique_with]
            if conn.execute(sa.select(t.c.id).where(col == new, *same_scope).limit(1)).first():
                continue
        conn.execute(t.update().where(t.c.id == row.id).values({column: new}))


def _conversation_ids() -> None:
    conn = op.get_bind()
    email = sa.table("email", sa.column("id"), sa.column("conversation_index"),
                     sa.column("conversation_id"))
    changed: list[dict] = []
    result = conn.execute(sa.select(email).where(email.c.conversation_index.is_not(None))
                          .order_by(email.c.id).execution_options(yield_per=BATCH))
    for row in result:
        new = conversation_id(row.conversation_index)
        if new is not None and new != row.conversation_id:
            changed.append({"row_id": row.id, "value": new})
    for start in range(0, len(changed), BATCH):
        conn.execute(email.update().where(email.c.id == sa.bindparam("row_id"))
                     .values(conversation_id=sa.bindparam("value")), changed[start:start + BATCH])


# The tables whose records mirror their addresses into ``email_address``, and their columns.
ADDRESS_SOURCES = {"user": ("email",), "queue": ("email",), "contact": ("email1", "email2", "email3"),
                   "account": ("email1", "email2", "email3"), "lead": ("email1", "email2", "email3")}


def _address_index() -> None:
    conn = op.get_bind()
    index = sa.table("email_address", sa.column("id"), sa.column("address"),
                     sa.column("record_type"), sa.column("record_id"))
    for kind, columns in ADDRESS_SOURCES.items():
        source = sa.table(kind, sa.column("id"), *(sa.column(c) for c in columns))
        indexed: dict[int, list[str]] = {}
        for row in conn.execute(sa.select(index.c.record_id, index.c.address)
                                .where(index.c.record_type == kind).order_by(index.c.id)):
            indexed.setdefault(row.record_id, []).append(row.address)
        for row in conn.execute(sa.select(source).order_by(source.c.id)):
            wanted = list(dict.fromkeys(a for a in (normalize_address(v) for v in row[1:] if v) if a))
            if wanted == indexed.get(row.id, []):
                continue
            conn.execute(index.delete().where(index.c.record_type == kind, index.c.record_id == row.id))
            if wanted:
                conn.execute(index.insert(), [{"address": a, "record_type": kind, "record_id": row.id}
                                              for a in wanted])


def upgrade():
    ids = "(<>"
    _renormalize("email", "message_id", _message_id, marks=ids)
    _renormalize("email", "dedupe_key", _dedupe_key, marks=ids, unique_with=())
    _renormalize("email", "in_reply_to", _message_id, marks=ids)
    _renormalize("email", "references", _references, marks=ids)
    _renormalize("track_request", "internet_message_id", _message_id, marks=ids,
                 unique_with=("user_id",))
    _renormalize("message_decision", "identity", _message_id, marks=ids, unique_with=("mailbox_id",))
    _conversation_ids()
    _address_index()
    _renormalize("activity_party", "address", normalize_address, marks='"')
    _renormalize("email", "sender_address", normalize_address, marks='"')
    _renormalize("message_decision", "from_address", normalize_address, marks='"')
    _renormalize("mailbox", "email_address", normalize_address, marks='"', unique_with=())
    _renormalize("tracking_block", "pattern", normalize_address, marks='"', unique_with=())


def downgrade():
    pass  # no schema change; keys are not rewritten back to the old rules
