"""The pane as the user sees it (issue 17 goal 6), for bench/pane.py: headless Chromium
(Playwright, /usr/bin/chromium) on the add-in preview page (/addin/preview) served by
gunicorn, its sample inbox replaced with the bench's items (a known contact as sender and
20 recipients each, half of them tracked), the pane signed in with the Salesperson's pane
token. For each of ``--browser-items`` openings (default 100), the clock starts in the page
when an item of the list is clicked and stops when the pane has rendered the cards of that
item (its ``main`` no longer busy and the sender's card there) and two animation frames
have run (the cards painted). Measured in the page (``performance.now``), so Playwright's
round trips are not counted.

Beside it, the server's time for the same context calls, from gunicorn's access log (``%(D)s``:
from the request read to the response written, in the worker), median and p95.
"""
from __future__ import annotations

import secrets
import statistics
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
TARGET_P50_MS, TARGET_P95_MS, TARGET_SERVER_MS = 150.0, 300.0, 10.0
ACCESS_FORMAT = "%(r)s %(s)s %(D)s"  # request line, status, microseconds

# Click the item, wait for the pane to load it and render its cards, then two frames.
OPEN_ITEM = """async ({key, sender}) => {
  const frame = document.getElementById("pv-pane").contentWindow;
  const doc = frame.document;
  const main = doc.getElementById("pane-main");
  const started = performance.now();
  let seenBusy = false;
  const ready = () => {
    if (main.getAttribute("aria-busy") === "true") { seenBusy = true; return false; }
    return seenBusy && doc.querySelector(`li.person[data-address="${sender}"]`) !== null;
  };
  await new Promise((resolve) => {
    const observer = new frame.MutationObserver(() => {
      if (ready()) { observer.disconnect(); resolve(); }
    });
    observer.observe(doc, {subtree: true, childList: true, attributes: true});
    document.querySelector(`.pv-item[data-key="${key}"]`).click();
    if (ready()) { observer.disconnect(); resolve(); }
  });
  await new Promise((resolve) => frame.requestAnimationFrame(() => frame.requestAnimationFrame(resolve)));
  return performance.now() - started;
}"""


def _who(person: dict | None) -> dict | None:
    if not person:
        return None
    return {"displayName": person.get("name") or person["address"], "emailAddress": person["address"]}


def samples(items: list[dict]) -> list[dict]:
    """The bench's context items as the preview's sample inbox holds them (Office.js shapes)."""
    return [{"key": f"bench-{n}", "folder": "Inbox", "type": "message", "mode": "read",
             "itemId": item["item_id"], "internetMessageId": item["internet_message_id"],
             "conversationId": item["conversation_id"], "subject": f"{item['subject']} ({n})",
             "from": _who(item["from"]), "to": [_who(p) for p in item["to"]],
             "cc": [_who(p) for p in item["cc"]], "date": "2026-12-01T09:00:00Z",
             "bodyText": "Hello,\n\nplease find the order attached.", "attachments": [],
             "bodyHtml": "<p>Hello,</p><p>please find the order attached.</p>"}
            for n, item in enumerate(items)]


def _password(app, address: str) -> str:
    """A password for the bench's Salesperson (made without one), to sign in to the page.
    Its hash is written directly: ``set_password`` would revoke the pane token the bench
    (and a later ``--reuse``) uses; this is the bench's own scratch database."""
    from sqlalchemy import select
    from server.db import db
    from server.security.models import User
    from server.security.passwords import hash_password
    password = "Bench-" + secrets.token_urlsafe(12)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == address))
        user.password_hash = hash_password(password)
        db.session.commit()
    return password


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def server_times(log: Path, since: int) -> list[float]:
    """Milliseconds of the context calls gunicorn logged after byte ``since`` of its log."""
    with log.open("rb") as f:
        f.seek(since)
        lines = f.read().decode("utf-8", "replace").splitlines()
    return [int(line.rsplit(" ", 1)[1]) / 1000 for line in lines
            if "/api/addin/context" in line and line.rsplit(" ", 2)[1] == "200"]


def bench_browser(app, base_url: str, access_log: Path, items: list[dict], secret: str,
                  openings: int) -> dict:
    from playwright.sync_api import sync_playwright
    address = items[0]["user_address"]
    password = _password(app, address)
    inbox = samples(items)
    timings: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base_url + "/addin/preview")
            page.get_by_label("Email", exact=True).fill(address)
            page.get_by_label("Password", exact=True).fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/addin/preview")
            page.evaluate("""([inbox, token]) => {
              const user = JSON.parse(document.getElementById("pv-user").textContent);
              localStorage.setItem(`regarding.preview.v1:${user.emailAddress}`, JSON.stringify(inbox));
              sessionStorage.setItem("regarding.paneToken", JSON.stringify({token}));
            }""", [inbox, secret])
            page.reload()
            pane = page.frame_locator("#pv-pane")
            try:
                pane.locator(f'li.person[data-address="{inbox[0]["from"]["emailAddress"]}"]') \
                    .wait_for(timeout=60000)
            except Exception:
                page.screenshot(path="/tmp/regarding-bench-pane-browser.png")
                raise SystemExit("the pane did not show the first item; it shows: "
                                 + pane.locator("#pane-main").inner_text()[:500]
                                 + " (screenshot /tmp/regarding-bench-pane-browser.png)")
            warm = min(10, len(inbox) - 1)
            for n in range(1, warm + 1):  # both gunicorn workers, the browser's caches
                page.evaluate(OPEN_ITEM, {"key": inbox[n]["key"], "sender": inbox[n]["from"]["emailAddress"]})
            since = access_log.stat().st_size
            time.sleep(0.2)
            for n in range(openings):
                sample = inbox[(warm + 1 + n) % len(inbox)]  # (never the one open: len > 1)
                timings.append(page.evaluate(OPEN_ITEM, {"key": sample["key"],
                                                         "sender": sample["from"]["emailAddress"]}))
            if errors:
                raise SystemExit(f"the page raised: {errors[:3]}")
        finally:
            browser.close()
    time.sleep(0.5)  # (the access log is written after the response)
    server = server_times(access_log, since)
    figures = {"p50": statistics.median(timings), "p95": _pct(timings, .95), "n": len(timings),
               "distinct": min(len(inbox), openings), "server_median": statistics.median(server),
               "server_p95": _pct(server, .95), "server_n": len(server)}
    print(f"  Chromium, an item opened in the preview -> its cards painted: "
          f"p50 {figures['p50']:.1f} ms, p95 {figures['p95']:.1f} ms over {figures['n']} openings "
          f"({figures['distinct']} distinct items); server time of the context call (gunicorn) "
          f"median {figures['server_median']:.1f} ms, p95 {figures['server_p95']:.1f} ms "
          f"(n={figures['server_n']})", flush=True)
    met = (figures["p50"] <= TARGET_P50_MS and figures["p95"] <= TARGET_P95_MS
           and figures["server_median"] <= TARGET_SERVER_MS)
    print(f"  targets p50 <= {TARGET_P50_MS:.0f} ms, p95 <= {TARGET_P95_MS:.0f} ms, server median "
          f"<= {TARGET_SERVER_MS:.0f} ms: {'met' if met else 'MISSED'}", flush=True)
    return figures
