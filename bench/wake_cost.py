"""The wake's cost: SQL statements (and milliseconds) a request's commit spends finding the
mailboxes to ask for (``server.sync.acts.wake``), in an organization of ``--users`` users
each with an item-syncing mailbox (Salespeople of one business unit).

Cases: a contact of Ann's changed that nobody else syncs (every filter the default); one
owned by a team of ten; the same contact with ``--anyone`` users whose own contact filter
says "anyone"; with the organization's contact filter saying "anyone" (every user a
candidate); an appointment with three attendees. The change is flushed before the count:
what is counted is the commit's own statements (the wake's reads and its one UPDATE).
Ann's principal is loaded first, as the request that made the change would have.

Run: ``.venv/bin/python bench/wake_cost.py [--users N] [--anyone N] [--reps N]``. SQLite, a file
under /tmp. It prints figures; it asserts nothing."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import event, update  # noqa: E402


def build(tmp: Path, users: int):
    from server import create_app
    from server.db import db
    from server.security.bootstrap import create_user, ensure_organization
    from server.security.models import Team
    from server.sync.models import Mailbox
    app = create_app({"TESTING": True,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'wake.db'}",
                      "SECRET_KEY": "bench",
                      "REGARDING_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                      "WTF_CSRF_ENABLED": False, "REGARDING_INSTANCE_DIR": str(tmp),
                      "REGARDING_LOG_LEVEL": "ERROR"})
    with app.app_context():
        db.create_all()
        ensure_organization("Bench")
        people = [create_user(f"u{n}@org.example", f"User {n}", roles=["Salesperson"])
                  for n in range(users)]
        for user in people:
            db.session.add(Mailbox(name=user.email, email_address=user.email, user_id=user.id,
                                   incoming_method="none", outgoing_method="none",
                                   acts_method="server_side_sync", enabled=True,
                                   email_approved=True,
                                   owning_business_unit_id=user.business_unit_id))
        team = Team(name="Ten", business_unit_id=people[0].business_unit_id)
        team.members = people[1:11]
        db.session.add(team)
        db.session.commit()
        return app, [u.id for u in people], team.id


def measure(app, label: str, change, reps: int) -> None:
    """``change()`` (in a request) makes a change; the commit after its flush is counted."""
    from server.db import db
    from server.security import authz
    from server.security.models import User
    from server.sync.models import Mailbox
    counts, times = [], []
    for _ in range(reps):
        with app.test_request_context():
            authz.principal(db.session.get(User, 1))  # the acting user, as a request has
            change()
            db.session.flush()
            seen = []
            listener = lambda *a: seen.append(1)  # noqa: E731
            event.listen(db.engine, "before_cursor_execute", listener)
            started = time.perf_counter()
            db.session.commit()
            times.append((time.perf_counter() - started) * 1000)
            event.remove(db.engine, "before_cursor_execute", listener)
            counts.append(len(seen))
            flagged = db.session.query(Mailbox).filter(Mailbox.sync_requested.is_(True)).count()
            db.session.execute(update(Mailbox).values(sync_requested=False))
            db.session.commit()
    print(f"  {label:<44} statements {max(counts):>4}   median {statistics.median(times):7.2f} ms"
          f"   mailboxes asked for {flagged}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--anyone", type=int, default=50)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        app, user_ids, team_id = build(Path(tmp), args.users)
        from server.crm.activities import ActivityParty, Appointment
        from server.crm.models import Contact
        from server.db import db
        from server.sync.models import SyncFilter
        with app.app_context():
            ann = user_ids[0]
            mine = Contact(last_name="Mine", full_name="Mine", owner_user_id=ann,
                           owning_business_unit_id=1)
            teams = Contact(last_name="Team's", full_name="Team's", owner_team_id=team_id,
                            owning_business_unit_id=1)
            meeting = Appointment(subject="Pricing", owner_user_id=ann, owning_business_unit_id=1,
                                  state="open", occurred_on=datetime.now(timezone.utc))
            meeting.parties = [ActivityParty(role="required", user_id=u) for u in user_ids[1:4]]
            db.session.add_all([mine, teams, meeting])
            db.session.commit()
            ids = {"mine": mine.id, "team": teams.id, "meeting": meeting.id}

            def touch(model, key):
                def change():
                    record = db.session.get(model, ids[key])
                    record.description = f"{time.perf_counter()}"
                return change
            print(f"{args.users} users with mailboxes (SQLite)")
            measure(app, "contact nobody else syncs", touch(Contact, "mine"), args.reps)
            measure(app, "contact owned by a team of 10", touch(Contact, "team"), args.reps)
            measure(app, "appointment, 3 attendees", touch(Appointment, "meeting"), args.reps)
            db.session.add_all(SyncFilter(user_id=u, kind="contact", name="All", owner="any")
                               for u in user_ids[-args.anyone:])
            db.session.commit()
            measure(app, f"contact, {args.anyone} users' filters say anyone",
                    touch(Contact, "mine"), args.reps)
            db.session.add(SyncFilter(user_id=None, kind="contact", name="All", owner="any"))
            db.session.commit()
            measure(app, "contact, the organization's says anyone", touch(Contact, "mine"),
                    args.reps)


if __name__ == "__main__":
    main()
