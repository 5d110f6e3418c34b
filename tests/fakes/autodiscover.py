"""A fake Exchange Autodiscover service (SOAP, ``/autodiscover/autodiscover.svc``) for the
EWS connector's tests: the GetUserSettings operation exchangelib sends, answered with the
shapes Microsoft documents (learn.microsoft.com, "GetUserSettings operation (SOAP)",
"UserResponse (SOAP)"): the mailbox's ``ExternalEwsUrl`` (the fake EWS endpoint),
``EwsSupportedSchemas`` and ``AutoDiscoverSMTPAddress``; ``InvalidUser`` for an address the
fake Exchange has no mailbox for.

Autodiscover is found from the mailbox's domain on port 443 over https (``https://<domain>/``
first, then ``https://autodiscover.<domain>/``), so the fake serves https on port 443 of a
loopback address of its own (127.77.x.y, needs the right to bind port 443) with a certificate
for those names; the tests point the names at that address for the test only. Sign-in is the
fake Exchange's own (the same users and passwords): 401 with ``WWW-Authenticate`` otherwise.
"""
from __future__ import annotations

import random
import shutil
import tempfile
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.fakes.ews import FakeExchange
from tests.servers.ports import make_self_signed_cert

S = "http://schemas.xmlsoap.org/soap/envelope/"
A = "http://schemas.microsoft.com/exchange/2010/Autodiscover"
WSA = "http://www.w3.org/2005/08/addressing"
PATH = "/autodiscover/autodiscover.svc"
SCHEMAS = "Exchange2007, Exchange2007_SP1, Exchange2010, Exchange2010_SP1, Exchange2010_SP2, " \
          "Exchange2013, Exchange2013_SP1, Exchange2016"


class _Quiet(WSGIRequestHandler):
    def log(self, *args) -> None:
        pass


class FakeAutodiscover:
    """Autodiscover for ``domain`` in front of a FakeExchange; ``start()`` serves it."""

    def __init__(self, exchange: FakeExchange, domain: str):
        self.exchange, self.domain = exchange, domain
        self.hosts = (domain, f"autodiscover.{domain}")
        self.address = f"127.77.{random.randint(1, 254)}.{random.randint(1, 254)}"
        self.requests: list[str] = []  # the host of each GetUserSettings answered
        self._dir = Path(tempfile.mkdtemp(prefix="regarding-autodiscover-"))
        self.cert = make_self_signed_cert(self._dir, "autodiscover", hosts=self.hosts)
        self._server = None

    def start(self) -> FakeAutodiscover:
        self._server = make_server(self.address, 443, self.wsgi, threaded=True,
                                   ssl_context=self.cert.server_context(), request_handler=_Quiet)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        shutil.rmtree(self._dir, ignore_errors=True)  # its certificate and key

    def wsgi(self, environ, start_response):
        request = Request(environ)
        if request.path.lower() != PATH or request.method not in ("POST", "HEAD", "GET"):
            return Response("", 404)(environ, start_response)
        header = request.headers.get("Authorization", "")
        user = self.exchange._authenticated(header)
        if user is None or request.method != "POST":
            return Response("", 401, headers=self.exchange._challenges(header))(
                environ, start_response)
        envelope = ET.fromstring(request.get_data())
        mailbox = envelope.find(f".//{{{A}}}Users/{{{A}}}User/{{{A}}}Mailbox")
        wanted = [s.text for s in envelope.iter(f"{{{A}}}Setting")]
        self.requests.append(request.host.split(":")[0])
        body = self._user_response((mailbox.text or "") if mailbox is not None else "", wanted)
        return Response(body, 200, content_type="text/xml; charset=utf-8")(
            environ, start_response)

    def _user_response(self, address: str, wanted: list[str]) -> str:
        if address.lower() in self.exchange.mailboxes:
            known = {"ExternalEwsUrl": self.exchange.url, "EwsSupportedSchemas": SCHEMAS,
                     "AutoDiscoverSMTPAddress": self.exchange.mailboxes[address.lower()].address,
                     "UserDisplayName": address}
            settings = "".join(
                f'<UserSetting i:type="StringSetting"><Name>{name}</Name>'
                f"<Value>{escape(known[name])}</Value></UserSetting>"
                for name in wanted if name in known)
            user = ("<ErrorCode>NoError</ErrorCode><ErrorMessage>No error.</ErrorMessage>"
                    '<RedirectTarget i:nil="true"/><UserSettingErrors/>'
                    f"<UserSettings>{settings}</UserSettings>")
        else:
            user = ("<ErrorCode>InvalidUser</ErrorCode><ErrorMessage>Invalid user: "
                    f"'{escape(address)}'</ErrorMessage>"
                    '<RedirectTarget i:nil="true"/><UserSettingErrors/><UserSettings/>')
        return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}" '
                f'xmlns:a="{WSA}"><s:Header><a:Action s:mustUnderstand="1">'
                f"{A}/Autodiscover/GetUserSettingsResponse</a:Action></s:Header><s:Body>"
                f'<GetUserSettingsResponseMessage xmlns="{A}" '
                'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Response>'
                "<ErrorCode>NoError</ErrorCode><ErrorMessage/><UserResponses><UserResponse>"
                f"{user}</UserResponse></UserResponses></Response>"
                "</GetUserSettingsResponseMessage></s:Body></s:Envelope>")
