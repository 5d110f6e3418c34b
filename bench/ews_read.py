"""EWS benchmark: reading a folder's messages whole through the EWS connector, with and
without ``ews_session``'s whole-body parsing of SOAP replies, beside the floor.

The EWS fake (tests/fakes/ews.py) is served by a child process with ``--messages`` messages
of about ``--size`` KB in one Inbox. Each round reads the whole Inbox through
``EwsConnector.fetch_changes`` from no cursor (SyncFolderItems, then GetItem with the MIME
content, 100 messages a request, as a first sync does), in three ways, interleaved:

* **whole**: as the connector runs (the reply's body parsed from memory);
* **byte by byte**: exchangelib's own ``_get_soap_parts`` (5.6), which parses each reply
  from ``response.iter_content()``, one byte a step;
* **floor**: the same GetItem requests sent with a plain ``requests`` session and their
  replies parsed by ``lxml.etree.fromstring``, the MIME content base64-decoded: HTTP and
  XML with nothing of exchangelib around them.

It prints this process's CPU (``time.process_time``) and the wall time per round, and
messages per CPU second, with the load average. Run: ``.venv/bin/python bench/ews_read.py
[--messages 500] [--size 40] [--rounds 5]``. It asserts nothing.
"""
from __future__ import annotations

import argparse
import base64
import os
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ADDRESS = "bob@org.example"
USER, PASSWORD = "ORG\\bob", "Bench-password-1"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def message(n: int, size: int) -> bytes:
    line = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
            "incididunt ut labore.\r\n")
    body = line * max(1, size * 1024 // len(line))
    return (f"From: Ann <ann@customer.example>\r\nTo: {ADDRESS}\r\nSubject: Message {n}\r\n"
            f"Message-ID: <m{n}@customer.example>\r\nContent-Type: text/plain\r\n\r\n"
            f"{body}").encode()


def serve(messages: int, size: int) -> tuple[int, int]:
    """The fake with the mailbox, in a child process; (its pid, its port)."""
    from tests.fakes.ews import FakeExchange
    fake = FakeExchange()
    fake.add_user(USER, PASSWORD, ADDRESS)
    for n in range(messages):
        fake.deliver(ADDRESS, message(n, size))
    from bench.idle_run import serve_forked
    from tests.fakes.ews import serve as serving
    return serve_forked(lambda: serving(fake).port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--size", type=int, default=40, help="KB per message")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pid, port = serve(args.messages, args.size)
    try:
        run(args, f"http://127.0.0.1:{port}/EWS/Exchange.asmx")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def run(args, url: str) -> None:
    import lxml.etree
    import requests
    from exchangelib.services.common import EWSService
    from requests.adapters import HTTPAdapter

    from server.sync.connectors import ews_session
    from server.sync.connectors.base import Account
    from server.sync.connectors.ews import EwsConnector

    account = Account(address=ADDRESS, username=USER, password=PASSWORD, timeout=60,
                      settings={"ews_url": url, "auth_type": "basic"})
    whole = EWSService._get_soap_parts
    byte_by_byte = classmethod(ews_session._soap_parts)
    get_items: list[bytes] = []
    real_send = HTTPAdapter.send

    def send(adapter, request, *a, **kw):
        if request.body and b"<m:GetItem" in request.body and len(get_items) < 1000:
            get_items.append(request.body)
        return real_send(adapter, request, *a, **kw)

    def read(parts) -> int:
        EWSService._get_soap_parts = parts
        with EwsConnector(account) as ews:
            inbox = next(f for f in ews.list_folders() if f.role == "inbox")
            cursor, count, more = None, 0, True
            while more:
                changes = ews.fetch_changes(inbox, cursor, 500)
                count += len(changes.messages)
                cursor, more = changes.cursor, changes.more
        return count

    def floor() -> int:
        count = 0
        with requests.Session() as http:
            http.auth = (USER, PASSWORD)
            for body in get_items:
                reply = http.post(url, data=body,
                                  headers={"Content-Type": "text/xml; charset=utf-8"})
                root = lxml.etree.fromstring(reply.content)
                for mime in root.iter("{http://schemas.microsoft.com/exchange/services/2006/types}MimeContent"):
                    base64.b64decode(mime.text or "")
                    count += 1
        return count

    HTTPAdapter.send = send
    read(whole)  # warm-up; records the GetItem requests the floor replays
    HTTPAdapter.send = real_send
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load()}; "
          f"{args.messages} messages of {args.size} KB, {args.rounds} rounds")
    ways = {"whole (as the connector runs)": lambda: read(whole),
            "byte by byte (exchangelib 5.6)": lambda: read(byte_by_byte),
            "floor (requests + lxml)": floor}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    wall: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for _ in range(args.rounds):
            for name, way in ways.items():
                c0, w0 = time.process_time(), time.perf_counter()
                count = way()
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - w0)
                assert count == args.messages, (name, count)
    finally:
        EWSService._get_soap_parts = whole
    for name in ways:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        print(f"  {name:32} CPU median {c:6.2f} s ({args.messages / c:7.0f} msg/CPU-s), "
              f"wall median {w:6.2f} s")
    print(f"load {load()}")


if __name__ == "__main__":
    main()
