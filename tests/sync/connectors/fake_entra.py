"""A stand-in for Microsoft Entra ID's v2.0 token service, over HTTPS on 127.0.0.1, built
from Microsoft's documented shapes: the tenant's OpenID configuration, and the token
endpoint's client-credentials and refresh-token grants (with ``invalid_client`` and
``invalid_grant`` errors). msal talks to it exactly as to login.microsoftonline.com."""
from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from tests.servers.ports import LOOPBACK, make_self_signed_cert


class FakeEntra:
    def __init__(self, tenant: str = "contoso-tenant", client_id: str = "app-id",
                 client_secret: str = "app-secret"):
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.refresh_tokens: set[str] = set()
        self.requests: list[dict] = []  # form fields of each token request
        self._dir = Path(tempfile.mkdtemp(prefix="regarding-entra-"))
        self.cert = make_self_signed_cert(self._dir, "entra")
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self._server.socket = self.cert.server_context().wrap_socket(
            self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def authority(self) -> str:
        return f"https://{LOOPBACK}:{self.port}/{self.tenant}"

    def issue_refresh_token(self) -> str:
        token = "rt-" + secrets.token_hex(8)
        self.refresh_tokens.add(token)
        return token

    def start(self) -> FakeEntra:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self._dir, ignore_errors=True)  # its certificate and key

    def _handler(self):
        entra = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                base = entra.authority
                if self.path.startswith(f"/{entra.tenant}/v2.0/.well-known/openid-configuration"):
                    return self._json(200, {
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                        "issuer": f"{base}/v2.0",
                    })
                self._json(404, {"error": "not_found"})

            def do_POST(self):
                if not self.path.startswith(f"/{entra.tenant}/oauth2/v2.0/token"):
                    return self._json(404, {"error": "not_found"})
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                entra.requests.append(form)
                if (form.get("client_id"), form.get("client_secret")) != (entra.client_id,
                                                                          entra.client_secret):
                    return self._json(401, {
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.\r\n"
                                             "Trace ID: 0000"})
                grant = form.get("grant_type")
                body = {"token_type": "Bearer", "expires_in": 3599,
                        "access_token": "at-" + secrets.token_hex(8), "scope": form.get("scope", "")}
                if grant == "client_credentials":
                    return self._json(200, body)
                if grant == "refresh_token":
                    if form.get("refresh_token") not in entra.refresh_tokens:
                        return self._json(400, {
                            "error": "invalid_grant",
                            "error_description": "AADSTS70008: The refresh token has expired."})
                    entra.refresh_tokens.discard(form["refresh_token"])
                    body["refresh_token"] = entra.issue_refresh_token()  # rotated
                    return self._json(200, body)
                self._json(400, {"error": "unsupported_grant_type"})

        return Handler
