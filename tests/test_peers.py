"""Smoke tests proving the peers in tests/servers/ are real and do what the suite relies on.

Each test talks the real protocol to the real peer: IMAP and POP3 to Dovecot, SMTP to
aiosmtpd, WebDAV to Radicale, and a page in headless Chromium.
"""

from __future__ import annotations

import email.policy
import http.server
import imaplib
import poplib
import smtplib
import socket
import threading
import time
from email.message import EmailMessage

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.servers.browser import OFFICE_JS_URL, route_office_js
from tests.servers.ports import free_port

# What the sync engine relies on from Dovecot (checked after login).
IMAP_MUST_HAVE = {
    b"IMAP4REV1", b"IDLE", b"CONDSTORE", b"QRESYNC", b"MOVE", b"UIDPLUS", b"ENABLE",
    b"ESEARCH", b"SPECIAL-USE", b"LIST-STATUS", b"LIST-EXTENDED", b"NAMESPACE",
    b"NOTIFY", b"METADATA", b"LITERAL+",
}


def message(subject: str, body: str = "Hello.\r\n", msgid: str | None = None) -> bytes:
    """A small RFC 5322 message with CRLF line ends, as it travels on the wire."""
    msg = EmailMessage()
    msg["From"] = "Dana Client <dana@contoso.example>"
    msg["To"] = "sales@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = msgid or f"<{subject.replace(' ', '.')}.{time.time_ns()}@contoso.example>"
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)


# ------------------------------------------------------------------------------ Dovecot


def test_imap_login_append_select_and_capabilities(dovecot, mail_user):
    raw = message("First contact")
    with IMAPClient(dovecot.host, dovecot.imap_port, ssl=False, timeout=10) as client:
        pre_login = set(client.capabilities())
        assert {b"IMAP4REV1", b"AUTH=PLAIN", b"AUTH=LOGIN"} <= pre_login
        client.login(mail_user.username, mail_user.password)
        caps = set(client.capabilities())
        assert IMAP_MUST_HAVE <= caps, IMAP_MUST_HAVE - caps
        # Dovecot 2.3 has no RFC 8474 OBJECTID; X-GUID (below) is its stable id.
        assert b"OBJECTID" not in caps

        assert client.enable("CONDSTORE") == [b"CONDSTORE"]
        response = client.append("INBOX", raw, flags=[b"\\Seen"])
        assert b"APPENDUID" in response
        selected = client.select_folder("INBOX")
        assert selected[b"EXISTS"] == 1
        assert selected[b"HIGHESTMODSEQ"] >= 1  # CONDSTORE is on
        uid = client.search("ALL")[0]
        fetched = client.fetch([uid], ["RFC822", "FLAGS", "MODSEQ"])[uid]
        assert fetched[b"RFC822"] == raw
        assert b"\\Seen" in fetched[b"FLAGS"]

        folders = {name: flags for flags, _sep, name in client.list_folders()}
        assert b"\\Sent" in folders["Sent"] and b"\\Trash" in folders["Trash"]
    # The message is a real Maildir file on disk.
    assert any((mail_user.maildir / "cur").iterdir())


def test_imap_move_condstore_and_mailbox_guid(dovecot, mail_user):
    first = dovecot.deliver(mail_user, message("Deal one"))
    second = dovecot.deliver(mail_user, message("Deal two"))
    assert second > first
    folder = "INBOX/Contoso deal"
    dovecot.create_mailbox(mail_user, folder)

    with dovecot.imap_client(mail_user) as client:
        client.enable("CONDSTORE")
        before = client.select_folder("INBOX")[b"HIGHESTMODSEQ"]
        client.add_flags([first], [b"\\Flagged"])
        changed = client.fetch([first, second], ["FLAGS"], modifiers=[f"CHANGEDSINCE {before}"])
        assert list(changed) == [first]

        client.move([second], folder)  # the MOVE extension, not COPY + EXPUNGE
        assert client.search("ALL") == [first]
        status = client.folder_status(folder, [b"MESSAGES", b"UIDVALIDITY", b"X-GUID"])
        assert status[b"MESSAGES"] == 1
        guid = status[b"X-GUID"].decode()

    # doveadm drives the same instance and agrees on the mailbox's stable GUID.
    out = dovecot.doveadm("mailbox", "status", "-u", mail_user.username, "guid messages",
                          folder).stdout
    assert f"guid={guid}" in out and "messages=1" in out
    dovecot.doveadm("move", "-u", mail_user.username, "Trash", "mailbox", folder, "all")
    with dovecot.imap_client(mail_user) as client:
        assert client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"] == 0
        assert client.folder_status("Trash", [b"MESSAGES"])[b"MESSAGES"] == 1


def test_imap_idle_and_notify_report_new_mail(dovecot, mail_user):
    imaplib.Commands.setdefault("NOTIFY", ("AUTH", "SELECTED"))
    dovecot.create_mailbox(mail_user, "Elsewhere")
    with dovecot.imap_client(mail_user) as client:
        client.select_folder("INBOX")
        typ, _ = client._imap._simple_command(
            "NOTIFY", "SET (selected (MessageNew (UID) MessageExpunge)) "
                      "(personal (MessageNew MessageExpunge))")
        assert typ == "OK"
        client.idle()
        dovecot.deliver(mail_user, message("Pushed"), "INBOX")
        dovecot.deliver(mail_user, message("Other folder"), "Elsewhere")
        seen, deadline = [], time.monotonic() + 5
        while time.monotonic() < deadline and not (
            (1, b"EXISTS") in seen and any(r[0] == b"STATUS" for r in seen)
        ):
            seen += client.idle_check(timeout=0.5)
        client.idle_done()
    assert (1, b"EXISTS") in seen, seen  # IDLE: the selected mailbox grew
    status = [r for r in seen if r[0] == b"STATUS"]
    assert status and status[0][1] == b"Elsewhere", seen  # NOTIFY: another mailbox did


def test_imap_metadata_round_trip(dovecot, mail_user):
    imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
    imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
    with dovecot.imap_client(mail_user) as client:
        typ, _ = client._imap._simple_command(
            "SETMETADATA", "INBOX", '(/private/comment "tracked by Regarding")')
        assert typ == "OK"
        typ, data = client._imap._simple_command("GETMETADATA", "INBOX", "/private/comment")
        assert typ == "OK"
        assert b"tracked by Regarding" in b"".join(
            d if isinstance(d, bytes) else b"".join(d) for d in
            client._imap.untagged_responses.pop("METADATA", []))


def test_wrong_password_is_refused(dovecot, mail_user):
    with IMAPClient(dovecot.host, dovecot.imap_port, ssl=False, timeout=10) as client:
        with pytest.raises(LoginError):
            client.login(mail_user.username, mail_user.password + "x")
    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
    try:
        pop.user(mail_user.username)
        with pytest.raises(poplib.error_proto):
            pop.pass_("wrong")
    finally:
        pop.close()


def test_pop3_uidl_and_retr(dovecot, mail_user):
    raws = [message("Pop one"), message("Pop two")]
    for raw in raws:
        dovecot.deliver(mail_user, raw)
    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
    try:
        assert "UIDL" in pop.capa()
        pop.user(mail_user.username)
        pop.pass_(mail_user.password)
        count, _size = pop.stat()
        assert count == 2
        uidls = [line.split()[1] for line in pop.uidl()[1]]
        assert len(set(uidls)) == 2
        _resp, lines, _octets = pop.retr(2)
        assert b"Subject: Pop two" in lines
    finally:
        pop.quit()
    # UIDLs are stable across sessions (what a POP3 cursor relies on).
    again = dovecot.pop3_client(mail_user)
    try:
        assert [line.split()[1] for line in again.uidl()[1]] == uidls
    finally:
        again.quit()


def test_dovecot_tls_variants(dovecot_tls, make_mail_user):
    user = make_mail_user(server=dovecot_tls)
    with IMAPClient(dovecot_tls.host, dovecot_tls.imap_port, ssl=False, timeout=10) as plain:
        assert b"STARTTLS" in plain.capabilities()
    for tls in ("starttls", "implicit"):
        with dovecot_tls.imap_client(user, tls=tls) as client:
            assert client.select_folder("INBOX")[b"EXISTS"] == 0
        pop = dovecot_tls.pop3_client(user, tls=tls)
        assert pop.stat()[0] == 0
        pop.quit()


def test_dovecot_kill_mid_session_and_restart(make_dovecot, make_mail_user):
    server = make_dovecot()
    user = make_mail_user(server=server)
    server.deliver(user, message("Survives a crash"))
    client = server.imap_client(user)
    client.select_folder("INBOX")
    server.kill()
    with pytest.raises((OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error)):
        client.fetch([1], ["RFC822"])
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.imap_port), timeout=1).close()
    server.restart()
    with server.imap_client(user) as again:
        assert again.select_folder("INBOX")[b"EXISTS"] == 1
    assert "Fatal" not in server.log_text()


# --------------------------------------------------------------------------------- SMTP


def test_smtp_send_is_received(smtp_server):
    raw = message("Quote for Contoso")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as smtp:
        smtp.sendmail("crm@example.com", ["dana@contoso.example", "ops@contoso.example"], raw)
    [got] = smtp_server.wait_for(1)
    assert got.mail_from == "crm@example.com"
    assert got.rcpt_tos == ("dana@contoso.example", "ops@contoso.example")
    assert got.message["Subject"] == "Quote for Contoso"
    assert got.data == raw
    assert got.authenticated_as is None and not got.tls


def test_smtp_auth_and_starttls(make_smtp_server):
    server = make_smtp_server(auth=("crm", "s3cret"), tls="starttls", require_starttls=True)
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        with pytest.raises(smtplib.SMTPException):
            smtp.sendmail("crm@example.com", ["a@b.example"], b"Subject: x\r\n\r\nx\r\n")
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        smtp.starttls(context=server.cert.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login("crm", "wrong")
        smtp.login("crm", "s3cret")
        smtp.sendmail("crm@example.com", ["a@b.example"], message("Over TLS"))
    [got] = server.wait_for(1)
    assert got.authenticated_as == "crm" and got.tls
    # smtplib tries each offered mechanism before giving up on the wrong password.
    assert ("crm", False) in server.auth_attempts
    assert server.auth_attempts[-1] == ("crm", True)


def test_smtp_plain_auth_required_without_tls(make_smtp_server):
    server = make_smtp_server(auth=("crm", "pw"))
    with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("crm@example.com", ["a@b.example"], b"Subject: x\r\n\r\nx\r\n")
        assert refused.value.smtp_code == 530
        smtp.login("crm", "pw")
        smtp.sendmail("crm@example.com", ["a@b.example"], message("Plain AUTH"))
    assert server.wait_for(1)[0].authenticated_as == "crm"


def test_smtp_fail_next_then_accept(smtp_server):
    smtp_server.fail_next(2)
    raw = message("Retry me")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as smtp:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPDataError) as failed:
                smtp.sendmail("crm@example.com", ["a@b.example"], raw)
            assert failed.value.smtp_code == 451
        smtp.sendmail("crm@example.com", ["a@b.example"], raw)
    assert len(smtp_server.wait_for(1)) == 1
    assert [stage for stage, _ in smtp_server.failed_attempts] == ["data", "data"]

    smtp_server.fail_next(1, code=550, text="5.1.1 No such user", stage="rcpt")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("crm@example.com", ["nobody@b.example"], raw)
    smtp_server.stop()
    with pytest.raises(OSError):
        smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=2)


# ----------------------------------------------------------------------------- Radicale

PROPFIND = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<propfind xmlns="DAV:"><prop><current-user-principal/><resourcetype/></prop></propfind>'
)


def test_radicale_propfind_and_calendar(radicale, radicale_user):
    response = radicale.request("PROPFIND", f"/{radicale_user.username}/", radicale_user,
                                body=PROPFIND, depth="0")
    assert response.status_code == 207
    assert f"<href>/{radicale_user.username}/</href>" in response.text

    assert radicale.request("PROPFIND", f"/{radicale_user.username}/", None,
                            body=PROPFIND, depth="0").status_code == 401

    calendar = f"/{radicale_user.username}/crm/"
    mkcol = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<mkcol xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><set><prop>'
        "<resourcetype><collection/><C:calendar/></resourcetype>"
        "</prop></set></mkcol>"
    )
    assert radicale.request("MKCOL", calendar, radicale_user, body=mkcol).status_code == 201
    event = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Regarding//tests//EN\r\n"
        "BEGIN:VEVENT\r\nUID:meeting-1@regarding\r\nDTSTAMP:20250101T090000Z\r\n"
        "DTSTART:20250102T100000Z\r\nDTEND:20250102T110000Z\r\n"
        "SUMMARY:Contoso kickoff\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    put = radicale.request("PUT", calendar + "meeting-1.ics", radicale_user, body=event,
                           headers={"Content-Type": "text/calendar; charset=utf-8"})
    assert put.status_code == 201
    got = radicale.request("GET", calendar + "meeting-1.ics", radicale_user)
    assert got.status_code == 200 and "SUMMARY:Contoso kickoff" in got.text


# ------------------------------------------------------------------------------ browser

OFFICE_STUB = """
window.__officeStubRan = true;
window.Office = {
  context: {mailbox: {item: {subject: "Stub subject"}}},
  onReady: function (callback) { callback({host: "Outlook", platform: "OfficeOnline"}); },
};
"""

PANE_HTML = f"""<!doctype html>
<html><head><title>pane</title>
<script src="{OFFICE_JS_URL}"></script></head>
<body><p id="subject">loading</p>
<script>
Office.onReady(function (info) {{
  document.getElementById("subject").textContent =
    info.host + ": " + Office.context.mailbox.item.subject;
}});
</script></body></html>
"""


@pytest.fixture
def pane_server():
    """A loopback HTTP server serving PANE_HTML at /pane.html."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = PANE_HTML.encode()
            self.send_response(200 if self.path == "/pane.html" else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_chromium_runs_office_js_stand_in_on_localhost_page(browser, page, pane_server):
    route_office_js(page, OFFICE_STUB)
    page.goto(pane_server + "/pane.html")
    page.wait_for_function("document.getElementById('subject').textContent !== 'loading'")
    assert page.text_content("#subject") == "Outlook: Stub subject"
    assert page.evaluate("window.__officeStubRan") is True

    outcome = page.evaluate(
        "fetch('https://example.com/').then(() => 'reached', () => 'blocked')")
    assert outcome == "blocked"
    assert "https://example.com/" in browser.blocked_urls(page)
    assert OFFICE_JS_URL not in browser.blocked_urls(page)


def test_chromium_data_url_page(page):
    page.goto("data:text/html,<title>t</title><p id=x>2</p><script>"
              "document.getElementById('x').textContent = String(6 * 7)</script>")
    assert page.text_content("#x") == "42"
    assert "Chrom" in page.evaluate("navigator.userAgent")
