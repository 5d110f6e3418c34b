"""Foundation benchmark: email address resolution and the first page of a busy timeline.

Loads ``--contacts`` contacts (default 1,000,000) with a tenth as many accounts and leads,
each with email addresses and their ``email_address`` index rows, into SQLite (a file under
/tmp) and/or PostgreSQL (a fresh database on 127.0.0.1:5432, created and dropped here), with
bulk inserts (executemany on SQLite, COPY on PostgreSQL), never the ORM per row. Then:

* resolves ~500 batches of 20 addresses (hits and misses, mixed case, addresses shared by a
  contact and a lead) with ``server.crm.services.resolution.resolve`` and prints median and p95 per
  batch (target: median <= 5 ms);
* builds one account with 10,000 activities (regarding it, or with it as a party) among
  ~200,000 others and times the first timeline page (25 items) with
  ``server.crm.services.timeline.timeline`` as a Salesperson (scoped to their business unit)
  and as a System Administrator, 50 runs each (target: first page <= 50 ms), for the
  account only and with its related records (the default roll-up: its contacts',
  opportunities' and cases' activities too), with the load average; the database's own
  plan also with the principal loaded before the clock starts (as if cached across
  requests) and as a page request does it (the session's user read with the security
  stamp, ``sessions.live_user``, and the principal the process keeps for that stamp), and
  with ``--db both`` the PostgreSQL/SQLite ratio of each (issue 17 goal 2);
* with ``--db both``, last, the page as a request on the two databases interleaved run by
  run (``bench_side_by_side``), beside a request's floor (the session's user alone): the
  ratio that the machine's drift between phases does not move.

Run: ``.venv/bin/python bench/resolve.py [--contacts N] [--db sqlite|postgresql|both]``.
It prints figures; it asserts nothing. See bench/README.md for the last full run.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402

PG_ADMIN_URL = os.environ.get("REGARDING_BENCH_PG",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
CHUNK = 50_000
BATCHES, WARMUP, BATCH_SIZE = 500, 50, 20
TIMELINE_RUNS, TIMELINE_ACTIVITIES, TIMELINE_TARGET = 50, 200_000, 10_000
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
FIRST = ("Anna Ben Carla David Emma Felix Grace Hugo Iris Jonas Karin Leo Maria Nils Olga "
         "Paul Quinn Rosa Sven Tara Umar Vera Walter Xenia Yusuf Zoe").split()
LAST = ("Smith Meyer Garcia Rossi Novak Kim Okafor Silva Jensen Dubois Weber Tanaka Costa "
        "Nowak Larsen Moreau Fischer Haddad Ivanova Murphy Schmidt Berg Lopez Kowalski").split()


# -- generic bulk loading ------------------------------------------------------------------

def _fill_defaults(table, row: dict) -> dict:
    """Python-side scalar defaults for NOT NULL columns the generator left out, so the loader
    keeps working when a column with a default is added to a table."""
    for column in table.columns:
        if column.name in row or column.nullable or column.primary_key:
            continue
        default = column.default
        if default is not None and default.is_scalar:
            row[column.name] = default.arg
    return row


class Loader:
    """Bulk insert of plain rows: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, engine):
        self.engine = engine
        self.dialect = engine.dialect.name

    def load(self, table, rows) -> int:
        """Insert an iterable of dicts (all with the same keys) into ``table``."""
        count, batch = 0, []
        for row in rows:
            batch.append(_fill_defaults(table, row))
            if len(batch) >= CHUNK:
                count += self._write(table, batch)
                batch = []
        if batch:
            count += self._write(table, batch)
        return count

    def _write(self, table, batch: list[dict]) -> int:
        columns = list(batch[0])
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            if self.dialect == "sqlite":
                values = [tuple(_sqlite_value(r[c]) for c in columns) for r in batch]
                cur.executemany(f'INSERT INTO "{table.name}" ({", ".join(columns)}) VALUES '
                                f'({", ".join("?" for _ in columns)})', values)
            else:
                names = ", ".join(f'"{c}"' for c in columns)
                with cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
                    for r in batch:
                        copy.write_row([r[c] for c in columns])
            raw.commit()
        finally:
            raw.close()
        return len(batch)

    def finish(self, tables) -> None:
        """Move PostgreSQL's id sequences past the explicit ids and refresh statistics."""
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                for table in tables:
                    if "id" in table.c and table.c.id.autoincrement:
                        conn.execute(text(
                            f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
                            f"COALESCE((SELECT max(id) FROM \"{table.name}\"), 1))"))
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE" if self.dialect == "postgresql" else "ANALYZE"))


def _sqlite_value(value):
    if isinstance(value, datetime):  # what SQLAlchemy's SQLite DateTime stores (UTC, no zone)
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return int(value)
    return value


# -- the data set ----------------------------------------------------------------------------

class Dataset:
    """Deterministic records: ids are 1..N per table, so addresses can be recomputed."""

    def __init__(self, contacts: int, units: list[int], owners: dict[int, list[int]]):
        self.contacts = contacts
        self.accounts = max(10, contacts // 10)
        self.leads = max(10, contacts // 10)
        self.units = units  # business unit ids records are spread over
        self.owners = owners  # unit id -> user ids in it
        self.rnd = random.Random(42)

    def owner(self, i: int) -> tuple[int, int]:
        unit = self.units[i % len(self.units)]
        users = self.owners[unit]
        return users[(i // len(self.units)) % len(users)], unit

    def account_address(self, i: int) -> str:
        return f"info@company{i}.example"

    def contact_address(self, i: int) -> str:
        account = 1 + (i * 7919) % self.accounts
        return f"{FIRST[i % 26].lower()}.{LAST[i % 24].lower()}.{i}@company{account}.example"

    def contact_second_address(self, i: int) -> str | None:
        return f"{FIRST[i % 26].lower()}{i}@mail{i % 97}.example" if i % 10 == 0 else None

    def lead_address(self, i: int) -> str:
        # Every fifth lead is a person who is also a contact (a duplicate across types).
        if i % 5 == 0:
            return self.contact_address(1 + (i * 104729) % self.contacts)
        return f"lead{i}@prospect{i % 5000}.example"

    def _audit(self, i: int) -> dict:
        owner, unit = self.owner(i)
        stamp = NOW - timedelta(minutes=i % 500_000)
        return {"owner_user_id": owner, "owning_business_unit_id": unit, "created_by_id": owner,
                "modified_by_id": owner, "created_on": stamp, "modified_on": stamp,
                "is_active": i % 50 != 0}

    def account_rows(self):
        for i in range(1, self.accounts + 1):
            yield {"id": i, "name": f"Company {i} Ltd", "account_number": f"AC{i:08d}",
                   "email1": self.account_address(i), "city": "Springfield", **self._audit(i)}

    def contact_rows(self):
        for i in range(1, self.contacts + 1):
            first, last = FIRST[i % 26], LAST[i % 24]
            yield {"id": i, "first_name": first, "last_name": last, "full_name": f"{first} {last}",
                   "email1": self.contact_address(i), "email2": self.contact_second_address(i),
                   "job_title": "Buyer", "parent_account_id": 1 + (i * 7919) % self.accounts,
                   **self._audit(i)}

    def lead_rows(self):
        for i in range(1, self.leads + 1):
            first, last = FIRST[(i + 3) % 26], LAST[(i + 5) % 24]
            yield {"id": i, "first_name": first, "last_name": last, "full_name": f"{first} {last}",
                   "email1": self.lead_address(i), "company_name": f"Prospect {i % 5000}",
                   "status": "new", **self._audit(i)}

    def address_rows(self):
        # No explicit ids: the users' addresses are in the index already.
        for i in range(1, self.accounts + 1):
            yield {"address": self.account_address(i), "record_type": "account", "record_id": i}
        for i in range(1, self.contacts + 1):
            for address in (self.contact_address(i), self.contact_second_address(i)):
                if address:
                    yield {"address": address, "record_type": "contact", "record_id": i}
        for i in range(1, self.leads + 1):
            yield {"address": self.lead_address(i), "record_type": "lead", "record_id": i}

    def batch(self) -> list[str]:
        """20 addresses as an email's parties look: mostly contacts, some accounts and leads
        (some also contacts), unknown senders, mixed case, an address given twice."""
        r = self.rnd
        out = []
        for _ in range(11):
            out.append(self.contact_address(r.randint(1, self.contacts)))
        out.append(self.account_address(r.randint(1, self.accounts)))
        out.append(self.lead_address(r.randint(1, self.leads)))
        out.append(self.lead_address(5 * r.randint(1, self.leads // 5)))  # contact and lead
        for _ in range(4):
            out.append(f"stranger{r.randint(1, 10**9)}@nowhere{r.randint(1, 999)}.example")
        out = [a.upper() if r.random() < 0.2 else a for a in out]
        out.append(out[0].title())  # the same address again, differently cased
        out.append(f"<{out[1]}>")
        return out


def activity_rows(ds: Dataset, target_account: int, total: int, target: int,
                  regarding_heavy: int | None = None):
    """``total`` activities; ``target`` of them concern ``target_account`` (four in five
    regarding it, one in five with it as a party: the party-heavy record), the rest regard
    random records. With ``regarding_heavy``, ``target`` more concern that account, all but
    one in 500 regarding it (a record whose activities are mostly *regarding* it, as
    accounts, opportunities and cases usually are). Yields (row, kind, the account that is
    a party to it or None)."""
    r = random.Random(7)
    kinds = ("email", "email", "email", "task", "phone_call", "appointment")
    step = total // target
    for i in range(1, total + 1):
        owner, unit = ds.owner(r.randrange(1 << 20))
        when = NOW - timedelta(seconds=r.randint(0, 730 * 86400))
        kind = kinds[i % len(kinds)]
        row = {"id": i, "activity_type": kind, "subject": f"Activity {i}", "state": "completed",
               "priority": "normal", "occurred_on": when, "owner_user_id": owner,
               "owning_business_unit_id": unit, "created_by_id": owner, "modified_by_id": owner,
               "created_on": when, "modified_on": when}
        concerns = i % step == 0
        as_party = concerns and (i // step) % 5 == 0
        other = regarding_heavy is not None and i % step == step // 2
        other_party = other and (i // step) % 500 == 0
        for column in ("regarding_account_id", "regarding_contact_id", "regarding_opportunity_id"):
            row[column] = None
        party = None
        if concerns and not as_party:
            row["regarding_account_id"] = target_account
        elif as_party:
            party = target_account
        elif other and not other_party:
            row["regarding_account_id"] = regarding_heavy
        elif other_party:
            party = regarding_heavy
        elif i % 3 == 0:
            row["regarding_contact_id"] = r.randint(1, ds.contacts)
        else:
            row["regarding_account_id"] = r.randint(1, ds.accounts) if r.random() < 0.9 else None
            if row["regarding_account_id"] in (target_account, regarding_heavy):
                row["regarding_account_id"] = None
        yield row, kind, party


def load_timeline(loader: Loader, ds: Dataset, target_account: int,
                  regarding_heavy: int | None = None) -> None:
    from server.crm.activities import ACTIVITY_MODELS, Activity, ActivityParty
    activities, subtypes, parties = [], {k: [] for k in ACTIVITY_MODELS}, []
    party_id = 0
    for row, kind, party in activity_rows(ds, target_account, TIMELINE_ACTIVITIES,
                                          TIMELINE_TARGET, regarding_heavy):
        activities.append(row)
        sub = {"id": row["id"]}
        if kind == "email":
            sub.update(direction="incoming", status="received", sent_on=row["occurred_on"],
                       message_id=f"<bench-{row['id']}@bench.example>")
        subtypes[kind].append(sub)
        contact = 1 + (row["id"] * 31) % ds.contacts
        party_id += 1
        when = row["occurred_on"]  # each party row carries its activity's time
        parties.append({"id": party_id, "activity_id": row["id"], "role": "from",
                        "occurred_on": when, "address": ds.contact_address(contact),
                        "contact_id": contact, "account_id": None, "user_id": None})
        party_id += 1
        if party is not None:
            parties.append({"id": party_id, "activity_id": row["id"], "role": "to",
                            "occurred_on": when, "address": ds.account_address(party),
                            "contact_id": None, "account_id": party, "user_id": None})
        else:
            parties.append({"id": party_id, "activity_id": row["id"], "role": "to",
                            "occurred_on": when, "address": None, "contact_id": None,
                            "account_id": None, "user_id": row["owner_user_id"]})
    loader.load(Activity.__table__, activities)
    for kind, rows in subtypes.items():
        loader.load(ACTIVITY_MODELS[kind].__table__, rows)
    loader.load(ActivityParty.__table__, parties)


# -- the runs -----------------------------------------------------------------------------

def _p95(samples: list[float]) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(round(0.95 * len(samples))) - 1)]


def _stats(samples: list[float], cpu: list[float] | None = None) -> str:
    """Median and p95 of wall-clock times; with ``cpu``, also the median CPU time of this
    process and its PostgreSQL backend (what a run costs even when other work competes for
    the CPUs and the wall-clock time mostly measures waiting for one)."""
    out = f"median {statistics.median(samples):7.2f} ms   p95 {_p95(samples):7.2f} ms"
    if cpu:
        out += f"   (CPU median {statistics.median(cpu):6.2f} ms)"
    return out + f"   n={len(samples)}"


def _setup_org():
    """Organization, a root unit and two sales units with a Salesperson each, an admin."""
    from server.db import db
    from server.security.bootstrap import create_user, ensure_organization, root_unit
    from server.security.models import BusinessUnit
    ensure_organization("Bench Ltd")
    root = root_unit()
    units = [root]
    for name in ("Sales North", "Sales South", "Service"):
        unit = BusinessUnit(name=name, parent_id=root.id)
        db.session.add(unit)
        units.append(unit)
    db.session.flush()
    admin = create_user("admin@bench.example", "Bench Admin", unit=root,
                        roles=["System Administrator"])
    owners = {root.id: [admin.id]}
    sales = None
    for unit in units[1:]:
        user = create_user(f"sales.{unit.id}@bench.example", f"Sales {unit.name}", unit=unit,
                           roles=["Salesperson"])
        owners[unit.id] = [user.id]
        sales = sales or user
    out = admin.id, sales.id, [u.id for u in units], owners
    # Read before the commit: reading the expired objects after it would open a transaction
    # that stays open through the load, and PostgreSQL's VACUUM then cannot mark the loaded
    # pages all-visible (every index-only scan fetching the heap, as no settled table does).
    db.session.commit()
    return out


def _kept_users() -> tuple[int, int, list[int], dict[int, list[int]]]:
    """``_setup_org``'s answer for a database kept from an earlier run (--keep)."""
    from sqlalchemy import select
    from server.db import db
    from server.security.models import BusinessUnit, User
    units = list(db.session.scalars(select(BusinessUnit.id).order_by(BusinessUnit.id)))
    owners: dict[int, list[int]] = {}
    for user_id, unit in db.session.execute(select(User.id, User.business_unit_id)
                                            .where(User.email.like("%@bench.example"))
                                            .order_by(User.id)):
        owners.setdefault(unit, []).append(user_id)
    admin = db.session.scalar(select(User.id).where(User.email == "admin@bench.example"))
    sales = min(u for unit, users in owners.items() for u in users if u != admin)
    db.session.commit()
    return admin, sales, units, owners


class Backend:
    """One database of the run: its app, loaded (or kept) data set and users; ``close`` drops
    what was made (a kept database stays)."""

    def __init__(self, backend: str, contacts: int, keep: str | None = None):
        from server import create_app
        from server.db import db
        self.name = backend
        self.tmp = Path(tempfile.mkdtemp(prefix=f"regarding-bench-{backend}-"))
        self.admin_engine, self.keep, kept = None, keep, False
        if backend == "sqlite":
            path = Path(tempfile.gettempdir()) / f"regarding-bench-{keep}-{contacts}.db" if keep \
                else self.tmp / "bench.db"
            kept = keep is not None and path.exists()
            url = f"sqlite:///{path}"
        else:
            self.admin_engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            self.database = f"regarding_bench_{keep}_{contacts}" if keep else \
                f"regarding_bench_{uuid.uuid4().hex[:8]}"
            with self.admin_engine.connect() as conn:
                kept = keep is not None and conn.execute(text(
                    "SELECT 1 FROM pg_database WHERE datname = :name"),
                    {"name": self.database}).first()
                if not kept:
                    conn.execute(text(f'CREATE DATABASE "{self.database}"'))
            url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.database}"
        self.app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REGARDING_INSTANCE_DIR": str(self.tmp),
                               "SECRET_KEY": "bench", "REGARDING_LOG_LEVEL": "WARNING"})
        with self.app.app_context():
            if kept:
                print("  using the database kept from an earlier run (--keep)", flush=True)
            self.admin_id, self.sales_id, units, owners = _kept_users() if kept else \
                load_data(contacts)[:4]
            self.ds = Dataset(contacts, units, owners)
            self.records = {"party-heavy": self.ds.accounts // 2,
                            "regarding-heavy": self.ds.accounts // 3, "quiet": QUIET_ACCOUNT}
            self.version = db.session.execute(text(
                "SELECT sqlite_version()" if backend == "sqlite" else "SHOW server_version")).scalar()
            db.session.remove()

    def close(self) -> None:
        from server.db import db
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()
        if self.admin_engine is not None:
            if not self.keep:
                with self.admin_engine.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
            self.admin_engine.dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)  # the instance folder holds directories too


def run(backend: Backend) -> dict:
    """Time resolution and the timeline on ``backend`` alone."""
    from server.db import db
    out: dict = {"version": backend.version}
    with backend.app.app_context():
        out["resolve"] = bench_resolve(backend.ds, backend.sales_id)
        (out["timeline_sales"], out["timeline_admin"]), out["timeline_cpu"] = bench_timeline(
            backend.admin_id, backend.sales_id, backend.records)
        db.session.remove()
    return out


def load_data(contacts: int, regarding_heavy: bool = True):
    """Create the schema and load the data set (with ``regarding_heavy``, a second busy
    account whose activities are regarding it); ``_setup_org``'s answer and the Dataset."""
    from server.crm.activities import ACTIVITY_MODELS, Activity, ActivityParty
    from server.crm.addresses import EmailAddress
    from server.crm.models import Account, Contact, Lead
    from server.db import db
    db.create_all()
    admin_id, sales_id, units, owners = _setup_org()
    ds = Dataset(contacts, units, owners)
    loader = Loader(db.engine)
    started = time.perf_counter()
    n = loader.load(Account.__table__, ds.account_rows())
    n += loader.load(Contact.__table__, ds.contact_rows())
    n += loader.load(Lead.__table__, ds.lead_rows())
    idx = loader.load(EmailAddress.__table__, ds.address_rows())
    print(f"  loaded {n:,} records and {idx:,} address index rows "
          f"in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    load_timeline(loader, ds, ds.accounts // 2, ds.accounts // 3 if regarding_heavy else None)
    loader.finish([Account.__table__, Contact.__table__, Lead.__table__,
                   EmailAddress.__table__, Activity.__table__, ActivityParty.__table__,
                   *(m.__table__ for m in ACTIVITY_MODELS.values())])
    print(f"  loaded {TIMELINE_ACTIVITIES:,} activities and analyzed in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return admin_id, sales_id, units, owners, ds


def _sqlite() -> bool:
    from server.db import db
    return db.engine.dialect.name == "sqlite"


PRIORITY: int | None = None  # --priority: niceness for the timed phases
EXPLAIN = False  # --explain: print the timeline query's plan


def _cpu_ns(pids: list[int]) -> int:
    """CPU time (ns) used so far by this process (user + system, all threads) and the given
    PostgreSQL backends: what a run costs, however busy the machine is. This process's own
    from ``time.process_time_ns`` (its ``/proc/self/schedstat`` is the main thread's, updated
    only when it is switched out: a running thread reads stale, so short calls read 0); a
    backend's from its ``/proc/<pid>/schedstat``, fresh because it waits for the next query
    by the time it is read."""
    total = time.process_time_ns()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def _backends() -> list[int]:
    """The PostgreSQL backends serving this benchmark's database (none on SQLite)."""
    from server.db import db
    if _sqlite():
        return []
    pids = list(db.session.scalars(text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")))
    db.session.remove()
    return pids


def _prioritize() -> None:
    """With --priority (as root), run the timed phases and this database's PostgreSQL
    backends at that niceness, so that other work on a shared machine disturbs them less."""
    if PRIORITY is None:
        return
    from server.db import db
    pids = [0]
    if not _sqlite():
        db.session.execute(text("SELECT 1"))  # a pooled connection exists before we look
        pids += list(db.session.scalars(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")))
    for pid in pids:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, PRIORITY)
        except OSError as exc:
            print(f"  (cannot set priority {PRIORITY} for {pid or 'this process'}: {exc})")
    db.session.remove()


def bench_resolve(ds: Dataset, user_id: int) -> list[float]:
    from server.crm.services.resolution import resolve
    from server.db import db
    _prioritize()
    samples, cpu, resolved, pids = [], [], 0, []
    for i in range(WARMUP + BATCHES):
        batch = ds.batch()
        db.session.remove()  # a fresh session per batch, as per request
        if i == WARMUP:
            pids = _backends()
        started_cpu = _cpu_ns(pids)
        started = time.perf_counter()
        result = resolve(batch, user_id=user_id)
        elapsed = (time.perf_counter() - started) * 1000
        if i >= WARMUP:
            samples.append(elapsed)
            cpu.append((_cpu_ns(pids) - started_cpu) / 1e6)
            resolved += sum(1 for m in result.values() if m)
    print(f"  resolve 20 addresses:        {_stats(samples, cpu)}   "
          f"{resolved / BATCHES:.1f} of 20 resolved per batch", flush=True)
    return samples


def _reference_page(p, account_id: int, related: bool = False) -> list[int]:
    """The first page by the obvious query (one OR, sort everything): what the fast one
    must return; ``related``: with the account's contacts, opportunities and cases."""
    from sqlalchemy import or_, select
    from server.crm.activities import Activity, ActivityParty
    from server.crm.models import Case, Contact, Opportunity
    from server.db import db
    from server.security import authz
    ways = [Activity.regarding_account_id == account_id,
            Activity.id.in_(select(ActivityParty.activity_id)
                            .where(ActivityParty.account_id == account_id))]
    if related:
        contacts = select(Contact.id).where(Contact.parent_account_id == account_id)
        ways += [Activity.regarding_contact_id.in_(contacts),
                 Activity.id.in_(select(ActivityParty.activity_id)
                                 .where(ActivityParty.contact_id.in_(contacts))),
                 Activity.regarding_opportunity_id.in_(
                     select(Opportunity.id).where(Opportunity.customer_account_id == account_id)),
                 Activity.regarding_case_id.in_(
                     select(Case.id).where(Case.customer_account_id == account_id))]
    query = (select(Activity.id)
             .where(or_(*ways), authz.scope(p, Activity, "read"))
             .order_by(Activity.occurred_on.desc(), Activity.id.desc()).limit(25))
    return list(db.session.scalars(query))


def _time(fn, runs: int, before=None) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU times (ms) of ``fn()``, each run in a fresh session (as a request);
    ``before``: called first in that session, untimed (its result is given to ``fn``)."""
    from server.db import db
    samples, cpu, pids = [], [], []
    for i in range(5 + runs):
        db.session.remove()
        if i == 5:
            pids = _backends()
        given = before() if before is not None else None
        started_cpu = _cpu_ns(pids)
        started = time.perf_counter()
        fn(given) if before is not None else fn()
        if i >= 5:
            samples.append((time.perf_counter() - started) * 1000)
            cpu.append((_cpu_ns(pids) - started_cpu) / 1e6)
    return samples, cpu


QUIET_ACCOUNT = 7  # an account like most: about 20 activities among the 200,000


def bench_timeline(admin_id: int, sales_id: int, records: dict[str, int]):
    """The first page of each record's timeline (account only) by each plan of
    ``timeline.PLANS``, as a Salesperson and as a System Administrator, every page checked
    against the plain query; then the party-heavy account with its related records (the
    default roll-up, by the database's plan)."""
    from flask import current_app, g

    from server.crm.services.timeline import PLANS, plan_for, timeline
    from server.db import db, statements_commit_alone
    from server.security import authz, sessions
    from server.security.models import User
    _prioritize()
    chosen = plan_for(db.engine.dialect.name)
    print(f"  timeline plan chosen for {db.engine.dialect.name}: {chosen}", flush=True)
    results, figures = [], {}
    for label, user_id in (("Salesperson", sales_id), ("System Administrator", admin_id)):
        def principal():
            p = authz.principal(db.session.get(User, user_id))
            _ = p.unit_subtree, p.depths
            return p
        key = sessions.start(db.session.get(User, user_id), remember=False)
        db.session.commit()

        def as_a_request(account_id, alone):
            # What a page request does: the session's user and the security stamp in one
            # statement, the principal kept for that stamp, the page, and the request's end
            # (its ROLLBACK). ``alone``: as the record page does now, its statements each
            # their own transaction on PostgreSQL (no BEGIN, no ROLLBACK); else in one.
            if alone:
                statements_commit_alone()
            user = sessions.live_user(user_id, key)
            page = timeline(authz.principal(user), "account", account_id, limit=25,
                            related=False)
            db.session.remove()
            return page

        def forget_principals():  # each run a new request: nothing computed in the last one
            g.pop("_principals", None)

        first = None
        for name, account_id in records.items():
            for plan in PLANS:
                samples, cpu = _time(lambda: timeline(principal(), "account", account_id,  # noqa: B023
                                                      limit=25, related=False, plan=plan),  # noqa: B023
                                     TIMELINE_RUNS)
                if plan == chosen:  # the principal loaded before the clock starts (as if cached)
                    _, cached = _time(lambda p: timeline(p, "account", account_id,  # noqa: B023
                                                         limit=25, related=False), TIMELINE_RUNS,
                                      before=principal)
                    requested, walls = {}, {}
                    for alone in (False, True):
                        with current_app.test_request_context():
                            walls[alone], requested[alone] = _time(
                                lambda _: as_a_request(account_id, alone),  # noqa: B023
                                TIMELINE_RUNS, before=forget_principals)
                    figures[(label, name)] = (statistics.median(cpu), statistics.median(cached),
                                              statistics.median(requested[False]),
                                              statistics.median(requested[True]))
                page = timeline(principal(), "account", account_id, limit=25, related=False,
                                plan=plan)
                same = [a.id for a in page.items] == _reference_page(principal(), account_id)
                print(f"  timeline page 1 ({label}, {name} account, {plan}"
                      f"{' (chosen)' if plan == chosen else ''}):\n"
                      f"      {_stats(samples, cpu)}   {len(page.items)} items, "
                      + (f"principal loaded before: CPU median {figures[(label, name)][1]:.2f} ms, "
                         f"as a request: {figures[(label, name)][2]:.2f} ms in one "
                         f"transaction, {figures[(label, name)][3]:.2f} ms each statement "
                         f"alone (wall {statistics.median(walls[False]):.2f} and "
                         f"{statistics.median(walls[True]):.2f} ms), "
                         if plan == chosen else "") +
                      f"more: {page.next_cursor is not None}, "
                      f"same as the plain query: {'yes' if same else 'NO'}", flush=True)
                if EXPLAIN:
                    _explain(principal(), account_id, plan)
                if first is None and plan == chosen:
                    first = samples
        # The default for accounts: with related records (contacts, opportunities, cases).
        account_id = records["party-heavy"]
        rolled, rolled_cpu = _time(lambda: timeline(principal(), "account", account_id,
                                                    limit=25, related=True), TIMELINE_RUNS)
        page = timeline(principal(), "account", account_id, limit=25, related=True)
        second = timeline(principal(), "account", account_id, limit=25, related=True,
                          cursor=page.next_cursor)
        same = [a.id for a in page.items] == _reference_page(principal(), account_id, True)
        print(f"    party-heavy, with related records: {_stats(rolled, rolled_cpu)}   "
              f"{len(page.items)} items, page 2: {len(second.items)}, "
              f"same as the plain query: {'yes' if same else 'NO'}   (load {_load()})",
              flush=True)
        results.append(first)
    return results, figures


SIDE_BY_SIDE_RUNS = 200


def bench_side_by_side(lite: Backend, pg: Backend) -> None:
    """Issue 17 goal 2, the timeline page as a request, the two databases interleaved run by
    run in this one process (which one goes first alternating), so that both meet the same
    machine: on a shared one the CPU a run costs drifted by half between runs minutes
    apart, which separate phases of a run cannot tell from a difference between the
    databases. For each user and record: the page as a request (the session's user and
    stamp, the principal kept for that stamp, the page, each statement alone), and the
    request's floor (the session's user alone). Medians of the CPU of this process and
    PostgreSQL's backends."""
    from flask import g

    from server.crm.services.timeline import timeline
    from server.db import db, statements_commit_alone
    from server.security import authz, sessions
    from server.security.models import User
    keys, pids = {}, {}
    for backend in (lite, pg):
        with backend.app.app_context():
            _prioritize()
            for user_id in (backend.sales_id, backend.admin_id):
                keys[(backend.name, user_id)] = sessions.start(db.session.get(User, user_id),
                                                               remember=False)
            db.session.commit()
            pids[backend.name] = _backends()

    def one(backend: Backend, user_id: int, account_id: int | None) -> float:
        with backend.app.app_context(), backend.app.test_request_context():
            g.pop("_principals", None)
            db.session.remove()
            started = _cpu_ns(pids[backend.name])
            statements_commit_alone()
            user = sessions.live_user(user_id, keys[(backend.name, user_id)])
            if account_id is not None:
                timeline(authz.principal(user), "account", account_id, limit=25, related=False)
            db.session.remove()
            return (_cpu_ns(pids[backend.name]) - started) / 1e6

    print(f"timeline first page as a request, SQLite and PostgreSQL interleaved run by run "
          f"({SIDE_BY_SIDE_RUNS} each, load {_load()}); SQLite's CPU over PostgreSQL's "
          f"(goal >= 0.9x):", flush=True)
    for label in ("Salesperson", "System Administrator"):
        floor = None
        for name in (None, *lite.records):  # the floor first: each page is given beyond it
            samples: dict[str, list[float]] = {lite.name: [], pg.name: []}
            for i in range(10 + SIDE_BY_SIDE_RUNS):
                for backend in ((lite, pg) if i % 2 else (pg, lite)):
                    user_id = backend.sales_id if label == "Salesperson" else backend.admin_id
                    took = one(backend, user_id, backend.records[name] if name else None)
                    if i >= 10:
                        samples[backend.name].append(took)
            a, b = statistics.median(samples[lite.name]), statistics.median(samples[pg.name])
            if name is None:
                floor = a, b
                print(f"  {label}, the floor (the session's user alone): {a:.2f} / {b:.2f} ms "
                      f"= {a / b:.2f}x", flush=True)
                continue
            # What the page adds to the floor on each database (one round trip taken out).
            beyond = a - floor[0], b - floor[1]
            print(f"  {label}, {name} account: {a:.2f} / {b:.2f} ms = {a / b:.2f}x; beyond the "
                  f"floor {beyond[0]:.2f} / {beyond[1]:.2f} ms = "
                  + (f"{beyond[0] / beyond[1]:.2f}x" if beyond[1] > 0 else "-"), flush=True)
    a, b = _driver_alone(lite, pg)
    print(f"  under the floor, the driver alone (a one-row SELECT by key, no SQLAlchemy): "
          f"{a * 1000:.1f} / {b * 1000:.1f} us = {a / b:.2f}x   (load {_load()})")


def _driver_alone(lite: Backend, pg: Backend) -> tuple[float, float]:
    """Median CPU (ms) of one one-row SELECT by key through the bare driver (sqlite3; psycopg
    with its backend), interleaved: what a round trip costs each database with nothing of
    the app's around it."""
    from server.db import db
    connections = {}
    for backend in (lite, pg):
        with backend.app.app_context():
            connections[backend.name] = db.engine.raw_connection()
    pid = [connections[pg.name].dbapi_connection.info.backend_pid]
    sql = {lite.name: ('SELECT id, email FROM "user" WHERE id = ?', (lite.sales_id,)),
           pg.name: ('SELECT id, email FROM "user" WHERE id = $1', (pg.sales_id,))}
    samples: dict[str, list[float]] = {lite.name: [], pg.name: []}
    for i in range(100 + SIDE_BY_SIDE_RUNS * 10):
        for name in ((lite.name, pg.name) if i % 2 else (pg.name, lite.name)):
            pids = pid if name == pg.name else []
            started = _cpu_ns(pids)
            cursor = connections[name].cursor()
            cursor.execute(*sql[name])
            cursor.fetchall()
            cursor.close()
            if i >= 100:
                samples[name].append((_cpu_ns(pids) - started) / 1e6)
    for connection in connections.values():
        connection.rollback()
        connection.close()
    return statistics.median(samples[lite.name]), statistics.median(samples[pg.name])


def _explain(p, account_id: int, plan: str) -> None:
    """The plan of the page-ids statement (--explain): ``EXPLAIN QUERY PLAN`` on SQLite,
    ``EXPLAIN ANALYZE`` on PostgreSQL."""
    from server.crm.services.timeline import page_ids
    from server.db import db
    sql = str(page_ids(p, "account", account_id, limit=26, plan=plan)
              .compile(db.engine, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if _sqlite() else "EXPLAIN (ANALYZE, COSTS OFF) "
    for row in db.session.execute(text(prefix + sql)):
        print("        " + str(row[-1] if _sqlite() else row[0]))
    db.session.remove()


def _load() -> str:
    """The load average: the figures mean little when other work competes for the CPUs."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--priority", type=int, default=None,
                        help="niceness of the timed phases, e.g. -10 (needs root); "
                             "for a machine other work shares")
    parser.add_argument("--explain", action="store_true",
                        help="print the plan of the timeline page query")
    parser.add_argument("--keep", metavar="NAME", default=None,
                        help="keep the databases (named by NAME and the size) after the run "
                             "and use them again in the next run given the same NAME: "
                             "for before/after comparisons on the same data")
    args = parser.parse_args()
    global PRIORITY, EXPLAIN
    PRIORITY, EXPLAIN = args.priority, args.explain
    import sqlite3
    print(f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
          f"{platform.machine()}, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version} (library)")
    print(f"data: {args.contacts:,} contacts, {max(10, args.contacts // 10):,} accounts, "
          f"{max(10, args.contacts // 10):,} leads; {TIMELINE_ACTIVITIES:,} activities, "
          f"{TIMELINE_TARGET:,} about one account"
          + (f"; timed at niceness {args.priority}" if args.priority is not None else ""))
    outs, backends = {}, {}
    try:
        for name in (("sqlite", "postgresql") if args.db == "both" else (args.db,)):
            print(f"{name}:   (load average now: {_load()})", flush=True)
            backends[name] = Backend(name, args.contacts, args.keep)
            out = outs[name] = run(backends[name])
            print(f"  server version: {out['version']}; load average now: {_load()}")
        if len(outs) == 2:
            _print_ratio(outs["sqlite"]["timeline_cpu"], outs["postgresql"]["timeline_cpu"])
            bench_side_by_side(backends["sqlite"], backends["postgresql"])
    finally:
        for backend in backends.values():
            backend.close()


def _print_ratio(sqlite: dict, postgresql: dict) -> None:
    """Issue 17 goal 2: the first page's CPU on SQLite / on PostgreSQL (>= 0.9 is the goal),
    with the principal's statements timed, loaded before the clock (as if cached), and as a
    page request does it (the session's user and stamp read, the principal kept, the
    request's end): in one transaction, and each statement alone as the record page runs
    now on PostgreSQL."""
    print("timeline first page, PostgreSQL / SQLite (SQLite's CPU over PostgreSQL's; goal >= 0.9x):")
    for key, lite in sqlite.items():
        pg = postgresql[key]
        print(f"  {key[0]}, {key[1]}: " + "; ".join(
            f"{what} {a:.2f} / {b:.2f} ms = {a / b:.2f}x" for what, a, b in zip(
                ("with the principal", "principal loaded before", "as a request",
                 "as a request, each statement alone"), lite, pg)))


if __name__ == "__main__":
    main()
