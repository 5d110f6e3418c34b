"""Add-in benchmark: the task pane's one-round-trip context call on a CRM of 1,000,000 contacts.

Creates a fresh PostgreSQL database on 127.0.0.1:5432 (dropped at the end unless ``--keep``),
makes the schema with ``db.create_all()``, the organization and its users, and bulk-loads
``--contacts`` contacts (default 1,000,000) with a tenth as many accounts and leads, their
``email_address`` index rows and 200,000 background activities, reusing bench/resolve.py's
loader and data set (COPY, never the ORM per row). Adds one colleague per 2,000 contacts,
and for 40 "busy" contacts open opportunities, open cases and tracked emails (tracked with
``server.crm.services.tracking.track_email``, as the pane does), so that the tracking status and the
related data have content.

Items are emails as the pane sends them: a known contact as sender and 20 recipients (11
more contacts, two of them in a business unit the Salesperson may not read, 2 colleagues,
the user themself, 1 lead, 1 account, 4 unknown addresses); half of them already tracked.
Then, as a Salesperson with a pane token:

1. ``POST /api/addin/context`` in-process through the Flask test client (the whole request:
   bearer auth, privilege check, parsing, service, JSON, commit) and the service function
   alone inside a request context, ``--calls`` calls (default 300) after warm-up: median,
   p95 and SQL statements per call (counted with an SQLAlchemy event listener);
2. gunicorn (``server.wsgi:app``, ``--workers`` 2, gthread with 4 threads, plain HTTP on a
   free loopback port): the HTTP round trip from one keep-alive client sending the pane's
   headers, back to back and then ``--http-gap`` ms apart (default 100, as the Chromium run's
   openings are), median and p95, with the server's time from the access log; then
   ``wrk`` (Debian package) with a Lua script posting the items, at 8 and 32 connections for
   ``--duration`` seconds each: requests/s and latency percentiles;
3. Chromium on the add-in preview page, against the same gunicorn (``bench/pane_browser.py``):
   ``--browser-items`` items (default 100) opened one after the other, from the click to the
   pane's cards painted, p50 and p95, with the server's time for the same context calls from
   gunicorn's access log (median).

``--steps`` adds where one call's time goes, in-process, back to back and ``--http-gap`` ms
apart: each statement's wall time on the client and its backend's CPU, the COMMIT, and the
Python between them (medians).

Run: ``.venv/bin/python bench/pane.py [--contacts N] [--calls N] [--duration S] [--keep]
[--browser-items N] [--no-load-test] [--in-process-only] [--steps]``;
``--reuse FILE`` measures again on a database an earlier ``--keep`` run left (the load of
1,000,000 contacts takes minutes).
It prints figures; it asserts nothing. See bench/README.md for the last full run.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sqlalchemy import create_engine, event, text  # noqa: E402

import pane_browser  # noqa: E402  (bench/pane_browser.py: the Chromium measurement)
import resolve as data  # noqa: E402  (bench/resolve.py: Loader, Dataset, the org set-up)

PG_ADMIN_URL = data.PG_ADMIN_URL
BUSY_CONTACTS, TRACKED_PER_CONTACT = 40, 10
ITEMS = 100
WARMUP = 30
TARGET_MS = 20.0


# -- figures -------------------------------------------------------------------------------------

def _p95(samples: list[float]) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(round(0.95 * len(samples))) - 1)]


def _stats(samples: list[float]) -> str:
    return (f"median {statistics.median(samples):7.2f} ms   p95 {_p95(samples):7.2f} ms   "
            f"n={len(samples)}")


class QueryCounter:
    """Counts the SQL statements an engine executes (an SQLAlchemy event listener)."""

    def __init__(self, engine):
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args, **kwargs):
        self.count += 1


# -- the data set ----------------------------------------------------------------------------------

class World:
    """What the items are built from: readable and unreadable records, colleagues, the user."""

    def __init__(self, ds, sales_id: int, sales_email: str, sales_unit: int, colleagues: list[str],
                 busy: list[int], tracked: dict[int, list[str]]):
        self.ds, self.sales_id, self.sales_email = ds, sales_id, sales_email
        self.sales_unit, self.colleagues, self.busy, self.tracked = sales_unit, colleagues, busy, tracked
        self.rnd = random.Random(11)

    def in_unit(self, count: int, readable: bool = True) -> int:
        """A record id (1..count) owned in the Salesperson's business unit (or not)."""
        n = len(self.ds.units)
        want = self.ds.units.index(self.sales_unit)
        while True:
            i = self.rnd.randint(1, count)
            if i % 50 == 0:  # inactive
                continue
            if (i % n == want) == readable:
                return i

    def item(self, tracked: bool) -> dict:
        ds, r = self.ds, self.rnd
        sender = r.choice(self.busy)
        person = lambda a, name: {"name": name, "address": a}  # noqa: E731
        contacts = [self.in_unit(ds.contacts) for _ in range(9)]
        contacts += [self.in_unit(ds.contacts, readable=False) for _ in range(2)]
        lead = self.in_unit(ds.leads)
        while lead % 5 == 0:  # a lead that is not also a contact
            lead = self.in_unit(ds.leads)
        recipients = [person(ds.contact_address(c), f"Contact {c}") for c in contacts]
        recipients += [person(a, "Colleague") for a in r.sample(self.colleagues, 2)]
        recipients += [person(self.sales_email, "Me"),
                       person(ds.lead_address(lead), f"Lead {lead}"),
                       person(ds.account_address(self.in_unit(ds.accounts)), "Company")]
        recipients += [person(f"someone{r.randint(1, 10**9)}@unknown{r.randint(1, 999)}.example",
                              "Stranger") for _ in range(4)]
        r.shuffle(recipients)
        mid = (r.choice(self.tracked[sender]) if tracked
               else f"<new-{uuid.uuid4().hex}@contoso.example>")
        return {"type": "message", "mode": "read", "internet_message_id": mid,
                "conversation_id": f"conv-{r.randint(1, 10**6)}", "item_id": f"AAMk{uuid.uuid4().hex}",
                "subject": "Re: the quarterly order", "from": person(ds.contact_address(sender), "Sender"),
                "to": recipients[:12], "cc": recipients[12:], "organizer": None,
                "required_attendees": [], "optional_attendees": [], "start": None, "end": None,
                "location": None, "user_address": self.sales_email}


def _colleagues(count: int, unit_ids: list[int]) -> list[str]:
    from server.db import db
    from server.security.bootstrap import create_user
    from server.security.models import BusinessUnit
    addresses = []
    for i in range(count):
        unit = db.session.get(BusinessUnit, unit_ids[i % len(unit_ids)])
        user = create_user(f"colleague{i}@bench.example", f"Colleague {i}", unit=unit,
                           roles=["Salesperson"])
        addresses.append(user.email)
    db.session.commit()
    return addresses


def _busy_contacts(world_ds, sales_id: int, sales_unit: int) -> tuple[list[int], dict[int, list[str]]]:
    """Busy contacts of the Salesperson's unit: open opportunities and cases, tracked emails."""
    from server.crm.services import tracking
    from server.crm.models import Case, Contact, Opportunity
    from server.db import db, utcnow
    from server.security import authz
    from server.security.models import User
    user = db.session.get(User, sales_id)
    p = authz.principal(user)
    n = len(world_ds.units)
    want = world_ds.units.index(sales_unit)
    step = n * max(1, world_ds.contacts // (n * BUSY_CONTACTS * 2))
    busy = [i for i in range(want or n, world_ds.contacts, step) if i % 50 != 0][:BUSY_CONTACTS]
    tracked: dict[int, list[str]] = {}
    ticket = 0
    for c in busy:
        contact = db.session.get(Contact, c)
        audit = dict(owner_user_id=sales_id, owning_business_unit_id=sales_unit,
                     created_by_id=sales_id, modified_by_id=sales_id)
        for k in range(3):
            db.session.add(Opportunity(name=f"{contact.full_name} deal {k}", customer_contact_id=c,
                                       estimated_value=Decimal("12500.00"), status="open", **audit))
        for k in range(2):
            ticket += 1
            db.session.add(Case(title=f"{contact.full_name} issue {k}", customer_contact_id=c,
                                ticket_number=f"CAS-{ticket:06d}", status="in_progress", **audit))
        tracked[c] = []
        for k in range(TRACKED_PER_CONTACT):
            mid = f"<tracked-{c}-{k}@bench.example>"
            content = tracking.EmailContent(
                message_id=mid, subject=f"Order {k}", from_=("Sender", world_ds.contact_address(c)),
                to=[("Me", user.email)], cc=[], html_body=None, text_body="Hello.",
                sent_on=utcnow(), in_reply_to=None, references=[], conversation_index=None,
                tracking_token=None, attachments=[])
            tracking.track_email(p, content, regarding=("contact", c))
            tracked[c].append(mid)
        db.session.commit()
    return busy, tracked


def load(contacts: int):
    """Schema, organization, users and data; returns the World and the Salesperson's token."""
    from server.addin.actions import issue_pane_token
    from server.db import db
    from server.security.models import User
    _, sales_id, units, _, ds = data.load_data(contacts, regarding_heavy=False)
    started = time.perf_counter()
    sales = db.session.get(User, sales_id)
    sales_email, sales_unit = sales.email, sales.business_unit_id
    colleagues = _colleagues(max(4, contacts // 2000), units)
    busy, tracked = _busy_contacts(ds, sales_id, sales_unit)
    secret, _ = issue_pane_token(sales)
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    print(f"  {len(colleagues) + 4:,} users; {len(busy)} busy contacts with 3 open opportunities, "
          f"2 open cases and {TRACKED_PER_CONTACT} tracked emails each; in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return World(ds, sales_id, sales_email, sales_unit, colleagues, busy, tracked), secret


# -- 1. in-process ---------------------------------------------------------------------------------

def bench_in_process(app, items: list[dict], secret: str, calls: int) -> dict:
    from server.addin import payloads as pl
    from server.addin import context as pane_context
    from server.db import db
    from server.security import authz
    from server.security.models import User
    with app.app_context():
        engine = db.engine
        user_id = db.session.scalar(text("SELECT user_id FROM api_token WHERE kind = 'pane'"))
        db.session.remove()
    counter = QueryCounter(engine)
    client = app.test_client()  # (outside any app context: each request gets its own, as served)
    headers = {"Authorization": f"Bearer {secret}"}
    samples, queries, shapes = [], [], []
    cpu, pids = [], []
    for i in range(WARMUP + calls):
        body = {"item": items[i % len(items)]}
        if i == WARMUP:
            with app.app_context():
                pids = data._backends()
        before, started_cpu = counter.count, data._cpu_ns(pids)
        started = time.perf_counter()
        response = client.post("/api/addin/context", json=body, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"context call failed: {response.status_code} {response.get_data(as_text=True)[:500]}")
        if i >= WARMUP:
            samples.append(elapsed)
            cpu.append((data._cpu_ns(pids) - started_cpu) / 1e6)
            queries.append(counter.count - before)
            shapes.append(response.get_json())
    resolved = statistics.mean(sum(1 for x in s["parties"] if x["status"] == "resolved") for s in shapes)
    tracked = sum(1 for s in shapes if s["tracking"]["status"] == "tracked")
    rel = [s["related"] for s in shapes]
    print(f"  Flask test client, whole request: {_stats(samples)}   "
          f"SQL statements per call: {statistics.median(queries):.0f} (max {max(queries)})")
    print(f"    CPU time per call (this process + its PostgreSQL backend): {_stats(cpu)}")
    print(f"    per call: {resolved:.1f} of {len(shapes[0]['parties'])} parties resolved, "
          f"{tracked} of {len(shapes)} tracked; related: "
          f"{statistics.mean(len(r['open_opportunities']) for r in rel):.1f} opportunities, "
          f"{statistics.mean(len(r['open_cases']) for r in rel):.1f} cases, "
          f"{statistics.mean(len(r['recent_activities']) for r in rel):.1f} recent activities", flush=True)
    service_samples = []
    for i in range(WARMUP + calls):
        with app.app_context(), app.test_request_context("/api/addin/context", method="POST"):
            started = time.perf_counter()
            p = authz.principal(db.session.get(User, user_id))
            errors = pl.Errors()
            item = pl.item(items[i % len(items)], errors)
            pane_context.context(p, item)
            db.session.commit()
            elapsed = (time.perf_counter() - started) * 1000
            db.session.remove()
        if i >= WARMUP:
            service_samples.append(elapsed)
    print(f"  context.context alone (request context, principal + parse + commit): "
          f"{_stats(service_samples)}", flush=True)
    event.remove(engine, "before_cursor_execute", counter._seen)
    return {"client": samples, "service": service_samples, "queries": queries, "cpu": cpu}


def profile(app, items: list[dict], secret: str, calls: int) -> None:
    """--profile: the SQL of one call, EXPLAIN ANALYZE of its statements, and cProfile's
    view of ``calls`` calls."""
    import cProfile
    import pstats
    from server.db import db
    with app.app_context():
        engine = db.engine
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    seen: list[tuple[str, object]] = []
    listener = lambda conn, cur, stmt, params, ctx, many: seen.append((stmt, params))  # noqa: E731
    client.post("/api/addin/context", json={"item": items[0]}, headers=headers)
    event.listen(engine, "before_cursor_execute", listener)
    client.post("/api/addin/context", json={"item": items[0]}, headers=headers)
    event.remove(engine, "before_cursor_execute", listener)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        for stmt, params in seen:
            if not stmt.lstrip().upper().startswith("SELECT"):
                print(f"  -- {stmt[:200]}")
                continue
            cur.execute("EXPLAIN (ANALYZE, BUFFERS OFF) " + stmt, params)
            plan = [r[0] for r in cur.fetchall()]
            total = "; ".join(x for x in plan if x.startswith(("Planning Time", "Execution Time")))
            print(f"  -- {' '.join(stmt.split())[:300]}\n     {total}; {plan[0].strip()[:160]}")
        raw.rollback()
    finally:
        raw.close()
    prof = cProfile.Profile()
    prof.enable()
    for i in range(calls):
        client.post("/api/addin/context", json={"item": items[i % len(items)]}, headers=headers)
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(45)


# -- where a call's time goes ------------------------------------------------------------------------

STEP_NAMES = (("FROM api_token", "token"), ("role_privilege", "grants"),
              ("FROM organization", "org"), ("FROM email_address", "lookup"),
              ("track_request", "tracking"), ("FROM activity", "lists"),
              ("FROM opportunity", "lists"), ("FROM \"case\"", "lists"), ("owner_user", "cards"))


def _step_name(statement: str) -> str:
    return next((name for marker, name in STEP_NAMES if marker in statement),
                " ".join(statement.split())[:24])


class StepClock:
    """Per statement of a call: the client's wall time around the DBAPI execute (the round
    trip, psycopg's implicit BEGIN included in the first) and the backend's CPU over it
    (``/proc/<pid>/schedstat``, fresh: the backend waits for the next query when it is
    read); the COMMIT's wall time; the rest of the call is Python."""

    def __init__(self, engine):
        from sqlalchemy.orm import Session
        self.engine, self.steps, self._open = engine, [], None
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", self._commit)
        event.listen(Session, "after_commit", self._committed)

    def remove(self):
        from sqlalchemy.orm import Session
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)
        event.remove(self.engine, "commit", self._commit)
        event.remove(Session, "after_commit", self._committed)

    @staticmethod
    def _backend_ns(conn) -> int:
        pid = conn.connection.dbapi_connection.info.backend_pid
        with open(f"/proc/{pid}/schedstat") as fh:
            return int(fh.read().split()[0])

    def _before(self, conn, cursor, statement, params, context, many):
        self._open = (_step_name(statement), self._backend_ns(conn), time.perf_counter())

    def _after(self, conn, cursor, statement, params, context, many):
        ended = time.perf_counter()
        name, cpu, started = self._open
        self.steps.append((name, (ended - started) * 1000, (self._backend_ns(conn) - cpu) / 1e6))

    def _commit(self, conn):
        self._open = ("COMMIT", self._backend_ns(conn), time.perf_counter(), conn)

    def _committed(self, session):
        if self._open and self._open[0] == "COMMIT":
            name, cpu, started, conn = self._open
            self.steps.append((name, (time.perf_counter() - started) * 1000,
                               (self._backend_ns(conn) - cpu) / 1e6))
            self._open = None


def bench_steps(app, items: list[dict], secret: str, calls: int, gap_ms: float) -> None:
    """``--steps``: where one context call's time goes, through the Flask test client, back
    to back and ``gap_ms`` apart (as a user opens items): per statement the client's wall
    time and the backend's CPU (medians), and the Python between them."""
    from server.db import db
    with app.app_context():
        engine = db.engine
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    for gap in (0, gap_ms):
        clock = StepClock(engine)
        per_step: dict[str, list[tuple[float, float]]] = {}
        python, walls = [], []
        for i in range(WARMUP + calls):
            clock.steps = []
            started = time.perf_counter()
            response = client.post("/api/addin/context", json={"item": items[i % len(items)]},
                                   headers=headers)
            wall = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.status_code
            if i >= WARMUP:
                walls.append(wall)
                python.append(wall - sum(w for _, w, _ in clock.steps))
                for k, (name, w, c) in enumerate(clock.steps):
                    per_step.setdefault(f"{k + 1}. {name}", []).append((w, c))
            time.sleep(gap / 1000)
        clock.remove()
        pace = f"{gap:.0f} ms apart" if gap else "back to back"
        print(f"  steps, {pace}: whole call {_stats(walls)}; Python (all but the statements' "
              f"round trips) median {statistics.median(python):.2f} ms", flush=True)
        for name, values in per_step.items():
            print(f"    {name:<14} wall median {statistics.median(w for w, _ in values):6.2f} ms "
                  f"p95 {_p95([w for w, _ in values]):6.2f}   backend CPU median "
                  f"{statistics.median(c for _, c in values):5.2f} ms   (n={len(values)})")


# -- 2. gunicorn -----------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gunicorn_command() -> str:
    here = ROOT / ".venv/bin/gunicorn"  # (a worktree has no .venv: the one running this)
    return str(here if here.exists() else Path(sys.executable).parent / "gunicorn")


@contextmanager
def gunicorn(url: str, instance: Path, workers: int, threads: int):
    """gunicorn on a free port; yields the port. Its access log (request, status,
    microseconds) is ``instance / "access.log"``."""
    port = _free_port()
    env = {**os.environ, "REGARDING_DATABASE_URL": url, "REGARDING_INSTANCE_DIR": str(instance),
           "REGARDING_LOG_LEVEL": "WARNING", "REGARDING_SECRET_KEY": "bench-" + uuid.uuid4().hex,
           "REGARDING_SECURE_COOKIES": "0"}  # (plain HTTP on loopback: the browser signs in)
    proc = subprocess.Popen(
        [_gunicorn_command(), "server.wsgi:app", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads),
         "--graceful-timeout", "10", "--no-control-socket", "--log-level", "warning",
         "--access-logfile", str(instance / "access.log"),
         "--access-logformat", pane_browser.ACCESS_FORMAT],
        cwd=ROOT, env=env)
    try:
        for _ in range(120):
            if proc.poll() is not None:
                raise SystemExit("gunicorn exited")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


PANE_HEADERS = {"Accept": "application/json", "Accept-Language": "en-US",
                "Content-Type": "application/json"}  # what the pane's fetch sends (addin/js/api.js)


def bench_http(port: int, items: list[dict], secret: str, calls: int, access_log: Path,
               gap_ms: float = 0) -> list[float]:
    """Sequential calls over one keep-alive connection, with the pane's headers: the round
    trip as the pane sees it (minus the network). ``gap_ms``: the pause after each call, as
    a person opening one item after another leaves (the Chromium run's openings are ~100 ms
    apart); 0: back to back, every call meeting a process and a backend still warm. Beside
    it, the server's time of the measured calls from gunicorn's access log, as for Chromium."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {**PANE_HEADERS, "Authorization": f"Bearer {secret}"}
    bodies = [json.dumps({"item": it}) for it in items]
    samples = []
    for i in range(WARMUP * 2 + calls):  # both workers warm up
        started = time.perf_counter()
        conn.request("POST", "/api/addin/context", body=bodies[i % len(bodies)], headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status} from gunicorn")
        if i == WARMUP * 2 - 1:
            time.sleep(0.2)  # (the access log is written after the response)
            since = access_log.stat().st_size
        if i >= WARMUP * 2:
            samples.append(elapsed)
            time.sleep(gap_ms / 1000)
    conn.close()
    time.sleep(0.5)
    server = pane_browser.server_times(access_log, since)
    pace = f"{gap_ms:.0f} ms between calls" if gap_ms else "back to back"
    print(f"  HTTP round trip, one keep-alive client, {pace}: {_stats(samples)}; server time "
          f"(gunicorn) median {statistics.median(server):.1f} ms, p95 {_p95(server):.1f} ms", flush=True)
    return samples


LUA = """-- wrk: POST the pane's context call, cycling through the bench items.
local bodies = {%s}
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "/api/addin/context", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer %s",
  }, bodies[i])
end
"""


def _lua_string(s: str) -> str:
    assert "]==]" not in s
    return f"[==[{s}]==]"


def bench_wrk(port: int, items: list[dict], secret: str, connections: int, duration: int,
              tmp: Path) -> dict:
    script = tmp / "context.lua"
    script.write_text(LUA % (", ".join(_lua_string(json.dumps({"item": it})) for it in items), secret))
    threads = min(2, connections)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
                          "--timeout", "10s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                         timeout=duration + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    total = re.search(r"(\d+) requests in", out)
    print(f"  wrk {connections:2d} connections ({threads} threads), {duration} s: "
          f"{float(rps.group(1)) if rps else float('nan'):7.1f} requests/s   latency p50 {lat.get('50')}  "
          f"p75 {lat.get('75')}  p90 {lat.get('90')}  p99 {lat.get('99')}   "
          f"{total.group(1) if total else '?'} requests, non-2xx: {errors.group(1) if errors else 0}"
          + (f", socket errors: {sock.group(1)}" if sock else ""), flush=True)
    return {"rps": rps and float(rps.group(1)), "latency": lat, "raw": out}


# -- main -----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk run")
    parser.add_argument("--connections", default="8,32")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--keep", action="store_true",
                        help="keep the database, and write what --reuse needs to a file (printed)")
    parser.add_argument("--reuse", metavar="FILE",
                        help="measure on a database kept by an earlier --keep run (no load; kept)")
    parser.add_argument("--profile", action="store_true",
                        help="also print the SQL with EXPLAIN ANALYZE and a cProfile of the calls")
    parser.add_argument("--steps", action="store_true",
                        help="also print where a call's time goes, per statement, back to back "
                             "and --http-gap ms apart")
    parser.add_argument("--no-load-test", action="store_true", help="no wrk load test")
    parser.add_argument("--browser-items", type=int, default=100,
                        help="items opened in Chromium on the preview page (0: none)")
    parser.add_argument("--http-gap", type=float, default=100.0,
                        help="ms between the keep-alive client's paced calls (0: back to back only)")
    parser.add_argument("--in-process-only", action="store_true",
                        help="no gunicorn at all (no HTTP, wrk or Chromium figures)")
    args = parser.parse_args()

    from server import create_app
    from server.db import db

    print(f"machine: nproc {len(os.sched_getaffinity(0))} ({os.cpu_count()} CPUs), "
          f"{platform.machine()}, Python {platform.python_version()}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not shutil.which("wrk"):
        print("  (wrk is not installed: apt-get install -y wrk; the load test is skipped)")
    tmp = Path(tempfile.mkdtemp(prefix="regarding-bench-pane-"))
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    kept = json.loads(Path(args.reuse).read_text()) if args.reuse else None
    name = kept["database"] if kept else f"regarding_bench_pane_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        if not kept:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        version = conn.execute(text("SHOW server_version")).scalar()
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    print(f"PostgreSQL {version}; database {name}"
          + (f" (kept, {kept['contacts']:,} contacts)" if kept else f"; {args.contacts:,} contacts"),
          flush=True)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REGARDING_INSTANCE_DIR": str(tmp),
                      "SECRET_KEY": "bench", "REGARDING_LOG_LEVEL": "WARNING"})
    try:
        if kept:
            items, secret = kept["items"], kept["secret"]
        else:
            with app.app_context():
                world, secret = load(args.contacts)
                items = [world.item(tracked=i % 2 == 0) for i in range(ITEMS)]
                db.session.remove()
        if args.keep and not kept:
            state = Path(tempfile.gettempdir()) / f"{name}.json"
            state.write_text(json.dumps({"database": name, "contacts": args.contacts,
                                         "secret": secret, "items": items}))
            print(f"  kept: --reuse {state} (the pane token lasts 8 hours)", flush=True)
        print("in-process (PostgreSQL over loopback):", flush=True)
        figures = bench_in_process(app, items, secret, args.calls)
        median = statistics.median(figures["client"])
        print(f"  target median <= {TARGET_MS:.0f} ms: {'met' if median <= TARGET_MS else 'MISSED'}")
        if args.profile:
            profile(app, items, secret, args.calls)
        if args.steps:
            bench_steps(app, items, secret, args.calls, args.http_gap or 100.0)
        with app.app_context():
            db.engine.dispose()
        if args.in_process_only:
            return
        print(f"gunicorn: {args.workers} workers, gthread with {args.threads} threads, "
              f"plain HTTP on loopback (wrk and Chromium run on the same {os.cpu_count()} CPUs)",
              flush=True)
        with gunicorn(url, tmp, args.workers, args.threads) as port:
            bench_http(port, items, secret, args.calls, tmp / "access.log")
            if args.http_gap:
                bench_http(port, items, secret, args.calls, tmp / "access.log", args.http_gap)
            if shutil.which("wrk") and not args.no_load_test:
                for connections in (int(c) for c in args.connections.split(",")):
                    bench_wrk(port, items, secret, connections, args.duration, tmp)
            if args.browser_items:
                pane_browser.bench_browser(app, f"http://127.0.0.1:{port}", tmp / "access.log",
                                           items, secret, args.browser_items)
        print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        if args.keep or kept:
            print(f"kept database {name} ({url})")
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
