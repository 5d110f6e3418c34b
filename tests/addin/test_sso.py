"""Office SSO: access tokens signed by locally generated RSA keys, served as the tenant's
JWKS through the injectable fetcher (no network), checked end to end through the add-in API;
and msal's on-behalf-of exchange against a fake token endpoint."""
from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import func, select

from server.security import sso
from server.security.models import SsoLink
from server.db import db

TID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
OTHER_TID = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "6c1f32b5-1234-4f7a-9a4e-2b2f7c9d0e11"
HOST = "crm.contoso.test"
AUTHORITY = "https://login.microsoftonline.com"
CONFIG_URL = f"{AUTHORITY}/{TID}/v2.0/.well-known/openid-configuration"
JWKS_URL = f"{AUTHORITY}/{TID}/discovery/v2.0/keys"


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEYS = {"k1": _key(), "k2": _key(), "evil": _key()}


def jwk(kid: str) -> dict:
    data = RSAAlgorithm.to_jwk(KEYS[kid].public_key(), as_dict=True)
    return {**data, "kid": kid, "use": "sig", "alg": "RS256"}


class Tenant:
    """The tenant's OpenID configuration and key set, as login.microsoftonline.com serves them;
    counts what was fetched."""

    def __init__(self, kids=("k1",)):
        self.kids = list(kids)
        self.fetched: list[str] = []
        self.down = False

    def __call__(self, url: str) -> dict:
        self.fetched.append(url)
        if self.down:
            raise ConnectionError("no route to host")
        if url == CONFIG_URL:
            return {"issuer": f"{AUTHORITY}/{TID}/v2.0", "jwks_uri": JWKS_URL,
                    "token_endpoint": f"{AUTHORITY}/{TID}/oauth2/v2.0/token"}
        if url == JWKS_URL:
            return {"keys": [jwk(k) for k in self.kids]}
        raise AssertionError(f"unexpected fetch of {url}")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ANN_OID = str(uuid.uuid5(uuid.NAMESPACE_URL, "entra:ann"))  # Ann's Entra account, as Entra keeps it


def token(*, kid="k1", sign_with=None, alg="RS256", **overrides) -> str:
    now = int(time.time())
    claims = {"aud": CLIENT_ID, "iss": f"{AUTHORITY}/{TID}/v2.0", "tid": TID,
              "iat": now - 10, "nbf": now - 10, "exp": now + 3600, "scp": "access_as_user",
              "preferred_username": "ann@contoso.test", "oid": ANN_OID, "ver": "2.0"}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, KEYS[sign_with or kid], algorithm=alg, headers={"kid": kid})


@pytest.fixture
def tenant(app):
    t = Tenant()
    app.config.update(REGARDING_SSO_CLIENT_ID=CLIENT_ID, REGARDING_SSO_TENANT=TID,
                      REGARDING_BASE_URL=f"https://{HOST}")
    t.clock = Clock()
    sso.init_app(app, fetcher=t, clock=t.clock)
    return t


@pytest.fixture
def ann(make_user):
    return make_user("ann@contoso.test", name="Ann Archer")


def call(client, bearer: str):
    return client.post("/api/addin/context", headers={"Authorization": f"Bearer {bearer}"},
                       json={"item": {"type": "message", "mode": "read", "subject": "Hello"}})


def error_code(response) -> str:
    return response.get_json()["error"]["code"]


# -- accepted ----------------------------------------------------------------------------------

def test_a_valid_token_signs_the_user_in(client, tenant, ann):
    r = call(client, token())
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["user"] == {"id": ann.id, "name": "Ann Archer", "email": "ann@contoso.test"}


def test_v1_tokens_with_the_application_id_uri_are_accepted(client, tenant, ann):
    r = call(client, token(aud=f"api://{HOST}/{CLIENT_ID}", iss=f"https://sts.windows.net/{TID}/",
                           preferred_username=None, upn="Ann@Contoso.test", ver="1.0"))
    assert r.status_code == 200, r.get_json()


def test_the_configured_resource_is_an_accepted_audience(app, client, tenant, ann):
    app.config["REGARDING_SSO_RESOURCE"] = "api://addin.contoso.test/regarding"
    assert call(client, token(aud="api://addin.contoso.test/regarding")).status_code == 200


def test_the_email_claim_maps_when_no_username_claim_does(client, tenant, ann):
    r = call(client, token(preferred_username="someone@elsewhere.test", email="ann@contoso.test"))
    assert r.status_code == 200


def test_a_little_clock_skew_is_tolerated(client, tenant, ann):
    now = int(time.time())
    assert call(client, token(exp=now - 20, iat=now - 3600)).status_code == 200


# -- refused -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case, overrides, code", [
    ("wrong audience", {"aud": "00000003-0000-0000-c000-000000000000"}, "unauthenticated"),
    ("another app's id uri", {"aud": f"api://{HOST}/{uuid.uuid4()}"}, "unauthenticated"),
    ("wrong issuer", {"iss": f"{AUTHORITY}/{OTHER_TID}/v2.0"}, "unauthenticated"),
    ("issuer of another cloud", {"iss": f"https://login.example.test/{TID}/v2.0"}, "unauthenticated"),
    ("other tenant id", {"tid": OTHER_TID}, "unauthenticated"),
    ("expired", {"exp": -600, "iat": -4000}, "token_expired"),  # seconds from now
    ("not yet valid", {"nbf": 600}, "unauthenticated"),
    ("no expiry", {"exp": None}, "unauthenticated"),
    ("missing scope", {"scp": "User.Read"}, "unauthenticated"),
    ("no scope (an app token)", {"scp": None, "roles": ["access_as_user"]}, "unauthenticated"),
    ("unknown user", {"preferred_username": "nobody@contoso.test"}, "unauthenticated"),
    ("no user claim", {"preferred_username": None}, "unauthenticated"),
])
def test_invalid_tokens_are_refused(client, tenant, ann, case, overrides, code):
    # Times are offsets from when the test runs (not from collection, which may be long before).
    now = int(time.time())
    overrides = {k: now + v if k in ("exp", "iat", "nbf") and v is not None else v
                 for k, v in overrides.items()}
    r = call(client, token(**overrides))
    assert r.status_code == 401, case
    assert error_code(r) == code, case


def test_a_bad_signature_is_refused(client, tenant, ann):
    r = call(client, token(kid="k1", sign_with="evil"))
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    assert "signature" in r.get_json()["error"]["message"]


def test_a_tampered_payload_is_refused(client, tenant, ann, make_user):
    make_user("boss@contoso.test", roles=["System Administrator"])
    head, body, sig = token().split(".")
    claims = json.loads(jwt.utils.base64url_decode(body))
    claims["preferred_username"] = "boss@contoso.test"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    assert call(client, f"{head}.{forged}.{sig}").status_code == 401


def test_other_algorithms_are_refused(client, tenant, ann):
    hs = jwt.encode({"aud": CLIENT_ID, "exp": int(time.time()) + 60, "scp": "access_as_user",
                     "preferred_username": "ann@contoso.test"}, "a-shared-secret-of-thirty-two-bytes!", algorithm="HS256",
                    headers={"kid": "k1"})
    assert call(client, hs).status_code == 401
    head = jwt.utils.base64url_encode(json.dumps({"alg": "none", "kid": "k1", "typ": "JWT"}).encode()).decode()
    body = jwt.utils.base64url_encode(json.dumps({"aud": CLIENT_ID, "scp": "access_as_user",
                                                  "preferred_username": "ann@contoso.test"}).encode()).decode()
    assert call(client, f"{head}.{body}.").status_code == 401


def test_an_inactive_user_is_refused(client, tenant, ann):
    ann.is_active = False
    db.session.commit()
    r = call(client, token())
    assert r.status_code == 401 and error_code(r) == "unauthenticated"


def test_the_account_is_linked_once_by_tenant_and_object_id(client, tenant, ann, make_user):
    """Issue 11: the first sign-in links Ann's Entra account (tid + oid) to her by address;
    afterwards a token's address no longer matters, and no other account gets in as Ann."""
    make_user("bob@contoso.test", name="Bob Baker")
    assert call(client, token()).get_json()["user"]["id"] == ann.id
    link = db.session.scalar(select(SsoLink))
    assert (link.tenant_id, link.object_id, link.user_id) == (TID, ANN_OID, ann.id)
    # Ann's address in Entra changes (even to Bob's): still Ann
    renamed = call(client, token(preferred_username="bob@contoso.test"))
    assert renamed.get_json()["user"]["id"] == ann.id
    # another Entra account that now carries Ann's address is not Ann
    other = call(client, token(oid=str(uuid.uuid4())))
    assert other.status_code == 401 and "linked to another" in other.get_json()["error"]["message"]
    # a token naming no account is refused
    assert call(client, token(oid=None)).status_code == 401
    assert db.session.scalar(select(func.count()).select_from(SsoLink)) == 1


def test_a_user_without_the_addin_privilege_is_forbidden(client, tenant, make_user):
    make_user("ann@contoso.test", roles=())
    r = call(client, token())
    assert r.status_code == 403 and error_code(r) == "forbidden"


def test_garbage_bearer_tokens_are_refused(client, tenant, ann):
    for bearer in ("eyJhbGciOi.not.json", "eyJ" + "A" * 40 + ".x.y", "rgp_unknown"):
        r = call(client, bearer)
        assert r.status_code == 401 and error_code(r) == "unauthenticated", bearer


def test_without_sso_configured_a_jwt_is_refused(app, client, ann):
    sso.init_app(app, fetcher=Tenant())
    r = call(client, token())
    assert r.status_code == 401 and error_code(r) == "unauthenticated"
    assert "dialog" in r.get_json()["error"]["message"]


def test_a_multi_tenant_setting_is_refused(app, client, tenant, ann):
    app.config["REGARDING_SSO_TENANT"] = "common"
    assert call(client, token()).status_code == 401
    assert tenant.fetched == []


def test_keys_that_cannot_be_fetched_give_401_not_500(client, tenant, ann):
    tenant.down = True
    r = call(client, token())
    assert r.status_code == 401 and error_code(r) == "unauthenticated"


# -- the key cache -----------------------------------------------------------------------------

def test_keys_are_fetched_once_for_many_requests(client, tenant, ann):
    for _ in range(5):
        assert call(client, token()).status_code == 200
    assert tenant.fetched == [CONFIG_URL, JWKS_URL]


def test_keys_are_refreshed_after_their_time_to_live(client, tenant, ann):
    assert call(client, token()).status_code == 200
    tenant.clock.now += sso.KEYS_TTL + 1
    assert call(client, token()).status_code == 200
    assert tenant.fetched == [CONFIG_URL, JWKS_URL] * 2


def test_key_rotation_refetches_once_for_an_unknown_key_id(client, tenant, ann):
    assert call(client, token()).status_code == 200
    tenant.clock.now += sso.REFETCH_MIN_INTERVAL  # Microsoft rolls its keys
    tenant.kids = ["k1", "k2"]
    assert call(client, token(kid="k2")).status_code == 200
    assert call(client, token(kid="k2")).status_code == 200  # now cached
    assert tenant.fetched == [CONFIG_URL, JWKS_URL] * 2


def test_unknown_key_ids_cannot_make_the_server_refetch_repeatedly(client, tenant, ann):
    assert call(client, token()).status_code == 200
    tenant.clock.now += sso.REFETCH_MIN_INTERVAL
    for _ in range(5):
        assert call(client, token(kid="evil")).status_code == 401
    assert tenant.fetched == [CONFIG_URL, JWKS_URL] * 2  # one refetch, not five
    tenant.clock.now += sso.REFETCH_MIN_INTERVAL
    assert call(client, token(kid="evil")).status_code == 401
    assert len(tenant.fetched) == 6


# -- on behalf of ------------------------------------------------------------------------------

class FakeResponse:
    def __init__(self, status: int, body: dict):
        self.status_code, self.text, self.headers = status, json.dumps(body), {}

    def raise_for_status(self):
        if self.status_code >= 400:
            raise RuntimeError(self.status_code)


class TokenEndpoint:
    """Microsoft's token endpoint as msal talks to it, documented request and response shapes."""

    def __init__(self, reply: tuple[int, dict]):
        self.reply = reply
        self.posts: list[tuple[str, dict]] = []

    def get(self, url, params=None, headers=None, **kw):
        assert url == CONFIG_URL, url
        base = f"{AUTHORITY}/{TID}"
        return FakeResponse(200, {"issuer": f"{base}/v2.0",
                                  "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                                  "token_endpoint": f"{base}/oauth2/v2.0/token"})

    def post(self, url, params=None, data=None, headers=None, **kw):
        self.posts.append((url, dict(data or {})))
        return FakeResponse(*self.reply)

    def close(self):
        pass


def test_on_behalf_of_exchanges_the_sso_token_for_a_graph_token(app, tenant):
    app.config["REGARDING_SSO_CLIENT_SECRET"] = "client-secret"
    endpoint = TokenEndpoint((200, {"access_token": "graph-access-token", "token_type": "Bearer",
                                    "expires_in": 3600, "scope": "https://graph.microsoft.com/.default"}))
    sso.get(app).http_client = endpoint
    user_token = token()
    assert sso.acquire_token_on_behalf_of(user_token) == "graph-access-token"
    url, form = endpoint.posts[0]
    assert url == f"{AUTHORITY}/{TID}/oauth2/v2.0/token"
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert form["requested_token_use"] == "on_behalf_of"
    assert form["assertion"] == user_token
    assert form["client_id"] == CLIENT_ID and form["client_secret"] == "client-secret"
    assert "https://graph.microsoft.com/.default" in form["scope"].split()


def test_on_behalf_of_reports_consent_needed(app, tenant):
    app.config["REGARDING_SSO_CLIENT_SECRET"] = "client-secret"
    sso.get(app).http_client = TokenEndpoint((400, {
        "error": "invalid_grant", "suberror": "consent_required",
        "error_description": "AADSTS65001: The user or administrator has not consented"}))
    with pytest.raises(sso.OboFailed) as exc:
        sso.acquire_token_on_behalf_of(token())
    assert exc.value.error == "invalid_grant" and exc.value.suberror == "consent_required"
    assert "Consent" in exc.value.message


def test_on_behalf_of_needs_a_client_secret(app, tenant):
    with pytest.raises(sso.OboFailed) as exc:
        sso.acquire_token_on_behalf_of(token())
    assert exc.value.error == "not_configured"
