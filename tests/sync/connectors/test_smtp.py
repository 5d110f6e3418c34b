"""The SMTP sender against aiosmtpd: plain, AUTH, STARTTLS and implicit TLS; temporary and
permanent refusals; a server that is down; the no-send check Test & Enable uses."""
from __future__ import annotations

import smtplib
from dataclasses import replace

import pytest

from server.sync.connectors import outgoing
from server.sync.connectors.base import Account, ConnectorError
from server.sync.connectors.smtp import SmtpSender, _sign_in
from tests.servers.ports import free_port
from tests.sync.connectors.conftest import numbered


def smtp_account(server, **overrides) -> Account:
    fields = dict(address="sam@contoso.example", host=server.host, port=server.port,
                  security="none", timeout=10, settings={"helo_name": "crm.contoso.example"})
    if server.auth:
        fields.update(username=server.auth[0], password=server.auth[1])
    if server.cert:
        fields["settings"] = {**fields["settings"], "ca_file": str(server.cert.cert_path)}
    fields.update(overrides)
    return Account(**fields)


def test_registry_gives_the_smtp_sender():
    assert outgoing("smtp") is SmtpSender


def test_send_plain(smtp_server):
    raw = numbered(1)
    with SmtpSender(smtp_account(smtp_server)) as smtp:
        refused = smtp.send(raw, "sam@contoso.example", ["ann@customer.example", "bo@customer.example"])
    received = smtp_server.wait_for(1)[0]
    assert refused == {}
    assert received.mail_from == "sam@contoso.example"
    assert received.rcpt_tos == ("ann@customer.example", "bo@customer.example")
    assert received.data.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    assert not received.tls and received.authenticated_as is None


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_auth_over_tls(make_smtp_server, tls):
    server = make_smtp_server(auth=("sam", "S3cret-pass"), tls=tls)
    security = "starttls" if tls == "starttls" else "tls"
    with SmtpSender(smtp_account(server, security=security)) as smtp:
        smtp.send(numbered(1), "sam@contoso.example", ["ann@customer.example"])
    received = server.wait_for(1)[0]
    assert received.authenticated_as == "sam"
    if tls == "starttls":
        assert received.tls  # the session was upgraded before AUTH
    else:  # implicit TLS: a plain-text client gets nowhere
        with pytest.raises(ConnectorError) as caught:
            SmtpSender(smtp_account(server, security="none", timeout=1)).connect()
        assert caught.value.severity == "mailbox"


def test_wrong_password_is_an_auth_error(make_smtp_server):
    server = make_smtp_server(auth=("sam", "S3cret-pass"))
    with pytest.raises(ConnectorError) as caught:
        SmtpSender(smtp_account(server, password="nope")).connect()
    assert caught.value.severity == "auth" and "nope" not in caught.value.message
    # One failed sign-in, not one per mechanism the server offers (PLAIN and LOGIN here):
    # servers lock accounts out after a few.
    assert server.auth_attempts == [("sam", False)]


class _Offering:
    """Just enough of ``smtplib.SMTP`` for ``_sign_in``: what it offers, and the reply
    code each mechanism gets (a server that says a mechanism is not for it, which
    aiosmtpd does not do)."""

    def __init__(self, offered: str, codes: dict[str, int]):
        self.esmtp_features, self.codes, self.tried = {"auth": offered}, codes, []

    def auth(self, mechanism, _authobject):
        self.tried.append(mechanism)
        code = self.codes.get(mechanism, 235)
        if code != 235:
            raise smtplib.SMTPAuthenticationError(code, b"no")
        return code, b"ok"

    auth_plain = auth_login = auth_cram_md5 = None


@pytest.mark.parametrize("codes, tried, refused", [
    ({}, ["PLAIN"], False),
    ({"PLAIN": 535}, ["PLAIN"], True),  # the credentials: no other mechanism is tried
    ({"PLAIN": 504}, ["PLAIN", "LOGIN"], False),  # not this mechanism: the next one
    ({"PLAIN": 534, "LOGIN": 538}, ["PLAIN", "LOGIN", "CRAM-MD5"], False),
    ({"PLAIN": 504, "LOGIN": 504, "CRAM-MD5": 504}, ["PLAIN", "LOGIN", "CRAM-MD5"], True),
])
def test_a_password_signs_in_once_per_refusal_of_the_credentials(codes, tried, refused):
    smtp = _Offering("CRAM-MD5 LOGIN PLAIN XOAUTH2", codes)
    if refused:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            _sign_in(smtp, "sam", "pw")
    else:
        _sign_in(smtp, "sam", "pw")
    assert smtp.tried == tried


def test_missing_sign_in_is_an_auth_error(make_smtp_server):
    server = make_smtp_server(auth=("sam", "S3cret-pass"))
    with SmtpSender(smtp_account(server, username=None, password=None)) as smtp:
        with pytest.raises(ConnectorError) as caught:
            smtp.send(numbered(1), "sam@contoso.example", ["ann@customer.example"])
    assert caught.value.severity == "auth" and caught.value.code == "auth_required"


def test_451_is_temporary_then_the_next_try_goes_through(smtp_server):
    smtp_server.fail_next(1, code=451)
    with SmtpSender(smtp_account(smtp_server)) as smtp:
        with pytest.raises(ConnectorError) as caught:
            smtp.send(numbered(1), "sam@contoso.example", ["ann@customer.example"])
        smtp.send(numbered(1), "sam@contoso.example", ["ann@customer.example"])
    error = caught.value
    assert error.severity == "message" and error.retry_after and error.code == "smtp_temporary"
    assert "451" in error.message
    assert len(smtp_server.wait_for(1)) == 1


def test_550_is_permanent(smtp_server):
    smtp_server.fail_next(1, code=550, text="5.7.1 Message rejected as spam")
    with SmtpSender(smtp_account(smtp_server)) as smtp:
        with pytest.raises(ConnectorError) as caught:
            smtp.send(numbered(1), "sam@contoso.example", ["ann@customer.example"])
    assert caught.value.severity == "message" and caught.value.retry_after is None
    assert caught.value.code == "smtp_rejected" and "spam" in caught.value.message
    assert smtp_server.messages == []


def test_refused_recipients(smtp_server):
    smtp_server.fail_next(1, code=550, text="5.1.1 No such user", stage="rcpt")
    with SmtpSender(smtp_account(smtp_server)) as smtp:
        refused = smtp.send(numbered(1), "sam@contoso.example",
                            ["gone@customer.example", "ann@customer.example"])
        assert refused == {"gone@customer.example": "550 5.1.1 No such user"}
        smtp_server.fail_next(1, code=550, text="5.1.1 No such user", stage="rcpt")
        with pytest.raises(ConnectorError) as caught:
            smtp.send(numbered(2), "sam@contoso.example", ["gone@customer.example"])
    assert caught.value.code == "recipients_refused" and caught.value.retry_after is None
    assert [m.rcpt_tos for m in smtp_server.messages] == [("ann@customer.example",)]


def test_server_down_is_a_mailbox_error():
    account = Account(address="sam@contoso.example", host="127.0.0.1", port=free_port(),
                      security="none", timeout=5)
    with pytest.raises(ConnectorError) as caught:
        SmtpSender(account).connect()
    assert caught.value.severity == "mailbox" and caught.value.code == "connection_refused"


def test_starttls_required_but_not_offered(smtp_server):
    with pytest.raises(ConnectorError) as caught:
        SmtpSender(smtp_account(smtp_server, security="starttls")).connect()
    assert caught.value.code == "starttls_unsupported"


def test_verify_sends_nothing(make_smtp_server):
    server = make_smtp_server(auth=("sam", "S3cret-pass"))
    with SmtpSender(smtp_account(server)) as smtp:
        smtp.verify("sam@contoso.example", "sam@contoso.example")
        server.fail_next(1, code=550, text="5.7.1 Not your address", stage="mail")
        with pytest.raises(ConnectorError) as caught:
            smtp.verify("boss@contoso.example", "sam@contoso.example")
    assert server.messages == [] and server.auth_attempts == [("sam", True)]
    assert caught.value.code == "sender_refused" and "Not your address" in caught.value.message


@pytest.mark.parametrize("reply, code", [
    ("550 5.1.1 <sam@contoso.example>: Recipient address rejected: User unknown",
     "recipient_refused"),
    ("550 No such user here", "recipient_refused"),
    # Postfix checks the sender at RCPT (smtpd_delay_reject): about the sender all the same.
    ("553 5.7.1 <sam@contoso.example>: Sender address rejected: not owned by user sam",
     "sender_refused"),
    ("550 5.1.8 Bad sender's system address", "sender_refused"),
    ("450 4.2.0 Mailbox busy", "smtp_temporary"),
])
def test_verify_names_the_party_a_refused_rcpt_is_about(make_smtp_server, reply, code):
    server = make_smtp_server(auth=("sam", "S3cret-pass"))
    number, _, text = reply.partition(" ")
    server.fail_next(1, code=int(number), text=text, stage="rcpt")
    with SmtpSender(smtp_account(server)) as smtp:
        with pytest.raises(ConnectorError) as caught:
            smtp.verify("sam@contoso.example", "sam@contoso.example")
    assert caught.value.code == code and text in caught.value.message
    assert server.messages == []


class _XOAuth2Handler:
    """An aiosmtpd handler that takes only XOAUTH2 (as Microsoft 365 does for apps) and
    keeps the messages of signed-in sessions."""

    def __init__(self, token: str):
        self.token, self.users, self.messages = token, [], []

    async def auth_XOAUTH2(self, server, args):
        from base64 import b64decode

        from aiosmtpd.smtp import AuthResult
        fields = dict(part.split("=", 1) for part in
                      b64decode(args[1]).decode().split("\x01") if "=" in part)
        if fields.get("auth") != f"Bearer {self.token}":
            return AuthResult(success=False, handled=False,
                              message="535 5.7.3 Authentication unsuccessful")
        self.users.append(fields["user"])
        return AuthResult(success=True, auth_data=fields["user"])

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((session.authenticated, envelope.mail_from, envelope.content))
        return "250 OK"


@pytest.fixture
def xoauth2_server():
    from aiosmtpd.controller import Controller
    handler = _XOAuth2Handler("at-valid-token")
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(),
                            server_hostname="smtp.test.localhost", auth_require_tls=False,
                            auth_exclude_mechanism=["PLAIN", "LOGIN"])
    controller.start()
    yield controller, handler
    controller.stop()


def test_xoauth2_sign_in(xoauth2_server):
    controller, handler = xoauth2_server
    account = Account(address="sam@contoso.example", host="127.0.0.1", port=controller.port,
                      security="none", oauth_token="at-valid-token", timeout=10,
                      settings={"helo_name": "crm.contoso.example"})
    with SmtpSender(account) as smtp:
        smtp.send(numbered(1), "sam@contoso.example", ["ann@customer.example"])
    assert handler.users == ["sam@contoso.example"]
    assert handler.messages[0][:2] == (True, "sam@contoso.example")
    expired = replace(account, oauth_token="at-expired")
    with pytest.raises(ConnectorError) as caught:
        SmtpSender(expired).connect()
    assert caught.value.severity == "auth" and "access token" in caught.value.message
    assert "at-expired" not in caught.value.message
