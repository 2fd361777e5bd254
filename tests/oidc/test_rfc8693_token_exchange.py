"""RFC 8693 token exchange over HTTP, driven by independent clients: a person signs in through
the real pages (requests), authlib's OAuth 2.0 client redeems the code and asks for the
exchange (``fetch_token`` with the grant), PyJWT checks every issued token against the
published JWKS, and the new tokens are used at userinfo and introspection.

Each refusal answers the RFC 8693 §2.2.2 / RFC 6749 §5.2 error, writes a
``token.exchange_refused`` audit row with its reason, and issues nothing (no ``token.exchanged``
row, no refresh token row)."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt as pyjwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from cryptography.hazmat.primitives.asymmetric import rsa
from oidc_support import PASSWORD, Env, build_env

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
AT = "urn:ietf:params:oauth:token-type:access_token"
RT = "urn:ietf:params:oauth:token-type:refresh_token"
IDT = "urn:ietf:params:oauth:token-type:id_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"
PORTAL_CB = "https://portal.example.org/cb"
ORDERS = "https://orders.example.org/"
USER_SCOPE = "openid profile email offline_access"
LOCAL_RPS = {"allow_http": True, "allow_private_addresses": True}


def _policy(accept_from=("portal",), **extra):
    return {"accept_from": list(accept_from), "audiences": [ORDERS, "billing"], **extra}


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[dict]:
    from werkzeug.serving import make_server

    from idp.storage.clients import ClientRegistry

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with build_env(tmp_path_factory, LOCAL_RPS, issuer=url) as env:
        made = dict(env.secrets)
        with env.svc.sessions.begin() as db:
            reg = ClientRegistry(db, env.svc.hasher, env.svc.sealer)
            _, made["portal"] = reg.create(
                "portal", name="Portal", redirect_uris=[PORTAL_CB], first_party=True,
                grant_types=["authorization_code", "refresh_token"], scope=USER_SCOPE,
                extra={"access_token_lifetime": 600})
            _, made["pw-portal"] = reg.create(
                "pw-portal", name="Pairwise portal", redirect_uris=[PORTAL_CB], first_party=True,
                grant_types=["authorization_code"], scope=USER_SCOPE,
                extra={"subject_type": "pairwise"})
            _, made["api"] = reg.create(
                "api", name="Orders API", scope=USER_SCOPE,
                grant_types=[GRANT, "client_credentials", "refresh_token"],
                extra={"resources": [ORDERS], "token_exchange": _policy(
                    ("portal", "api", "pw-portal"), delegation=True, impersonation=True, refresh_tokens=True,
                    max_lifetime=120)})
            _, made["worker"] = reg.create(
                "worker", name="Worker", scope="openid email",
                grant_types=[GRANT, "client_credentials"],
                extra={"token_exchange": {"accept_from": ["api"], "delegation": True}})
            _, made["deleg"] = reg.create(
                "deleg", name="Delegation only", scope=USER_SCOPE, grant_types=[GRANT],
                extra={"token_exchange": _policy(delegation=True)})
            _, made["imper"] = reg.create(
                "imper", name="Impersonation only", scope=USER_SCOPE,
                grant_types=[GRANT, "client_credentials"],
                extra={"token_exchange": _policy(impersonation=True)})
            _, made["nopolicy"] = reg.create("nopolicy", name="No policy", scope=USER_SCOPE,
                                             grant_types=[GRANT, "client_credentials"])
            reg.create("billing", name="Billing", scope="openid email",
                       grant_types=["client_credentials"])
        server = make_server("127.0.0.1", port, env.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            meta = requests.get(f"{url}/.well-known/openid-configuration", timeout=10).json()
            jwks = requests.get(meta["jwks_uri"], timeout=10).json()
            yield {"url": url, "env": env, "secrets": made, "meta": meta, "jwks": jwks}
        finally:
            server.shutdown()
            thread.join(5)


# --- helpers ---------------------------------------------------------------------------------

def _sign_in(live, username: str = "alice", scope: str = USER_SCOPE,
             client_id: str = "portal") -> dict:
    """A code flow for the portal: a browser signs in on /login, authlib redeems the code."""
    rp = OAuth2Session(client_id, live["secrets"][client_id], scope=scope,
                       redirect_uri=PORTAL_CB, code_challenge_method="S256")
    verifier = "v" * 50
    url, _state = rp.create_authorization_url(live["meta"]["authorization_endpoint"],
                                              code_verifier=verifier)
    browser = requests.Session()
    for _ in range(10):
        resp = browser.get(url, allow_redirects=False, timeout=10)
        if resp.status_code == 200 and 'name="password"' in resp.text:
            csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', resp.text).group(1)
            rid = re.search(r'name="r"[^>]*value="([^"]*)"', resp.text)
            resp = browser.post(urljoin(url, "/login"), allow_redirects=False, timeout=10,
                                data={"csrf_token": csrf, "username": username,
                                      "password": PASSWORD, "r": rid.group(1) if rid else ""})
        assert resp.status_code in (302, 303), (resp.status_code, resp.text[:300])
        url = urljoin(url, resp.headers["Location"])
        if url.startswith(PORTAL_CB):
            break
    assert "code" in parse_qs(urlsplit(url).query), url
    return rp.fetch_token(live["meta"]["token_endpoint"], authorization_response=url,
                          code_verifier=verifier)


def _exchange(live, client_id: str, **params) -> requests.Response:
    data = {"grant_type": GRANT, **{k: v for k, v in params.items() if v is not None}}
    return requests.post(live["meta"]["token_endpoint"], data=data, timeout=10,
                         auth=(client_id, live["secrets"].get(client_id, "")))


def _service_token(live, client_id: str) -> str:
    resp = requests.post(live["meta"]["token_endpoint"], timeout=10,
                         data={"grant_type": "client_credentials"},
                         auth=(client_id, live["secrets"][client_id]))
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def _claims(live, token: str, audience) -> dict:
    header = pyjwt.get_unverified_header(token)
    key = pyjwt.PyJWK(next(k for k in live["jwks"]["keys"] if k["kid"] == header["kid"])).key
    return pyjwt.decode(token, key, algorithms=[header["alg"]], audience=audience,
                        issuer=live["url"], options={"require": ["exp", "iat", "sub"]})


def _state(env: Env) -> dict:
    """What an exchange could have issued or recorded."""
    from sqlalchemy import func, select

    from idp.storage.models import AuditEvent
    from idp.storage.models_oauth import RefreshToken

    with env.svc.sessions() as db:
        def count(action):
            return db.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == action))
        return {"refresh_tokens": db.scalar(select(func.count()).select_from(RefreshToken)),
                "exchanged": count("token.exchanged"),
                "refused": count("token.exchange_refused"),
                "issued": count("token.issued")}


def _last_refusal(env: Env) -> dict:
    from sqlalchemy import select

    from idp.storage.models import AuditEvent

    with env.svc.sessions() as db:
        row = db.scalars(select(AuditEvent).where(AuditEvent.action == "token.exchange_refused")
                         .order_by(AuditEvent.id.desc()).limit(1)).one()
        return dict(row.details or {}, actor=row.actor)


def _assert_refused(live, resp, error: str, reason: str, before: dict) -> None:
    assert resp.status_code in (400, 401), resp.text
    body = resp.json()
    assert body["error"] == error, body
    assert "access_token" not in body
    after = _state(live["env"])
    assert after["refresh_tokens"] == before["refresh_tokens"]
    assert after["exchanged"] == before["exchanged"]
    assert after["refused"] == before["refused"] + 1
    refusal = _last_refusal(live["env"])
    assert refusal["reason"] == reason and refusal["error"] == error
    assert not any(isinstance(v, str) and v.count(".") == 2 and len(v) > 100
                   for v in refusal.values()), "a token reached the audit row"


# --- discovery -------------------------------------------------------------------------------

def test_discovery_advertises_the_grant(live):
    assert GRANT in live["meta"]["grant_types_supported"]
    as_meta = requests.get(f"{live['url']}/.well-known/oauth-authorization-server",
                           timeout=10).json()
    assert GRANT in as_meta["grant_types_supported"]


# --- exchanges that succeed --------------------------------------------------------------------

def test_impersonation_narrows_scope_targets_the_resource_and_works_at_userinfo(live):
    user = _sign_in(live)
    subject = _claims(live, user["access_token"], "portal")
    before = _state(live["env"])
    api = OAuth2Session("api", live["secrets"]["api"])
    got = api.fetch_token(live["meta"]["token_endpoint"], grant_type=GRANT,
                          subject_token=user["access_token"], subject_token_type=AT,
                          resource=ORDERS, scope="openid email")
    assert got["issued_token_type"] == AT and got["token_type"] == "Bearer"
    assert got["scope"] == "openid email" and got["expires_in"] <= 120
    claims = _claims(live, got["access_token"], ORDERS)
    assert claims["sub"] == subject["sub"] and claims["client_id"] == "api"
    assert claims["scope"] == "openid email" and "act" not in claims
    assert claims["exp"] - claims["iat"] <= 120  # the policy's max_lifetime
    info = requests.get(live["meta"]["userinfo_endpoint"], timeout=10,
                        headers={"Authorization": f"Bearer {got['access_token']}"})
    assert info.status_code == 200 and info.json()["email"] == "alice@example.org"
    assert "given_name" not in info.json()  # profile was not part of the exchanged scope
    after = _state(live["env"])
    assert after["exchanged"] == before["exchanged"] + 1
    assert after["refresh_tokens"] == before["refresh_tokens"]


def test_the_audit_row_names_subject_client_audience_scopes_and_type(live):
    from sqlalchemy import select

    from idp.storage.models import AuditEvent

    user = _sign_in(live)
    resp = _exchange(live, "api", subject_token=user["access_token"], subject_token_type=AT,
                     audience="billing", scope="openid")
    assert resp.status_code == 200, resp.text
    with live["env"].svc.sessions() as db:
        row = db.scalars(select(AuditEvent).where(AuditEvent.action == "token.exchanged")
                         .order_by(AuditEvent.id.desc()).limit(1)).one()
        details, actor, target = dict(row.details), row.actor, row.target
    sub = _claims(live, user["access_token"], "portal")["sub"]
    assert actor == "client:api" and target == sub
    assert details["client_id"] == "api" and details["subject"] == sub
    assert details["subject_client"] == "portal" and details["audience"] == ["billing"]
    assert details["scopes"] == ["openid"] and details["issued_token_type"] == AT
    assert details["acting"] is None and details["delegation"] is False
    assert user["access_token"] not in str(details)
    assert resp.json()["access_token"] not in str(details)


def test_delegation_carries_act_and_a_second_hop_nests_it(live):
    user = _sign_in(live)
    sub = _claims(live, user["access_token"], "portal")["sub"]
    first = _exchange(live, "api", subject_token=user["access_token"], subject_token_type=AT,
                      actor_token=_service_token(live, "api"), actor_token_type=AT,
                      scope="openid email")
    assert first.status_code == 200, first.text
    one = _claims(live, first.json()["access_token"], "api")
    assert one["sub"] == sub and one["act"] == {"sub": "api", "client_id": "api"}
    # The worker accepts the API's tokens: its own service token is the next actor.
    second = _exchange(live, "worker", subject_token=first.json()["access_token"],
                       subject_token_type=AT, actor_token=_service_token(live, "worker"),
                       actor_token_type=AT)
    assert second.status_code == 200, second.text
    two = _claims(live, second.json()["access_token"], "worker")
    assert two["sub"] == sub and two["scope"] == "openid email"
    assert two["act"] == {"sub": "worker", "client_id": "worker",
                          "act": {"sub": "api", "client_id": "api"}}
    # The resource server sees the chain at introspection (RFC 8693 §4.1, RFC 7662).
    seen = requests.post(live["meta"]["introspection_endpoint"], timeout=10,
                         data={"token": second.json()["access_token"]},
                         auth=("worker", live["secrets"]["worker"])).json()
    assert seen["active"] is True and seen["act"] == two["act"] and seen["sub"] == sub


def test_a_refresh_token_by_exchange_is_the_clients_own(live):
    user = _sign_in(live)
    resp = _exchange(live, "api", subject_token=user["access_token"], subject_token_type=AT,
                     requested_token_type=RT, scope="openid offline_access")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["issued_token_type"] == RT and body["token_type"] == "N_A"
    own = body["access_token"]
    # Its own refresh token is a subject the API may present (its policy accepts itself) ...
    again = _exchange(live, "api", subject_token=own, subject_token_type=RT, scope="openid")
    assert again.status_code == 200, again.text
    assert _claims(live, again.json()["access_token"], "api")["scope"] == "openid"
    # ... and it still works at the refresh grant: exchanging it did not use it up.
    refreshed = requests.post(live["meta"]["token_endpoint"], timeout=10,
                              data={"grant_type": "refresh_token", "refresh_token": own},
                              auth=("api", live["secrets"]["api"]))
    assert refreshed.status_code == 200, refreshed.text
    assert _claims(live, refreshed.json()["access_token"], "api")["client_id"] == "api"


def test_an_id_token_and_a_refresh_token_as_subjects(live):
    user = _sign_in(live)
    from_id = _exchange(live, "api", subject_token=user["id_token"], subject_token_type=IDT,
                        requested_token_type=IDT)
    assert from_id.status_code == 200, from_id.text
    body = from_id.json()
    assert body["issued_token_type"] == IDT and body["token_type"] == "N_A"
    id_claims = _claims(live, body["access_token"], "api")
    assert id_claims["sub"] == _claims(live, user["id_token"], "portal")["sub"]
    assert body["scope"] == "openid"  # an ID token grants nothing beyond openid
    # A refresh token is only ever the presenting client's own: the portal's is refused.
    before = _state(live["env"])
    resp = _exchange(live, "api", subject_token=user["refresh_token"], subject_token_type=RT)
    _assert_refused(live, resp, "invalid_request", "invalid_subject_token", before)


def test_a_jwt_is_asked_for_and_answered(live):
    user = _sign_in(live)
    resp = _exchange(live, "api", subject_token=user["access_token"], subject_token_type=JWT,
                     requested_token_type=JWT, scope="openid")
    assert resp.status_code == 200, resp.text
    assert resp.json()["issued_token_type"] == JWT
    assert _claims(live, resp.json()["access_token"], "api")["scope"] == "openid"


# --- refusals: the error, and nothing issued -----------------------------------------------------

def test_no_policy_is_unauthorized_client(live):
    user = _sign_in(live)
    before = _state(live["env"])
    resp = _exchange(live, "nopolicy", subject_token=user["access_token"], subject_token_type=AT)
    _assert_refused(live, resp, "unauthorized_client", "no_policy", before)


def test_a_public_client_is_refused(live):
    user = _sign_in(live)
    before = _state(live["env"])
    resp = requests.post(live["meta"]["token_endpoint"], timeout=10,
                         data={"grant_type": GRANT, "client_id": "spa",
                               "subject_token": user["access_token"],
                               "subject_token_type": AT})
    _assert_refused(live, resp, "unauthorized_client", "public_client", before)


def test_a_client_without_the_grant_is_refused(live):
    user = _sign_in(live)
    before = _state(live["env"])
    resp = _exchange(live, "portal", subject_token=user["access_token"], subject_token_type=AT)
    _assert_refused(live, resp, "unauthorized_client", "grant_not_allowed", before)


def test_a_revoked_subject_token_is_refused(live):
    user = _sign_in(live)
    revoked = requests.post(live["meta"]["revocation_endpoint"], timeout=10,
                            data={"token": user["access_token"]},
                            auth=("portal", live["secrets"]["portal"]))
    assert revoked.status_code == 200
    before = _state(live["env"])
    resp = _exchange(live, "api", subject_token=user["access_token"], subject_token_type=AT)
    _assert_refused(live, resp, "invalid_request", "invalid_subject_token", before)


def test_a_subject_token_expires_on_the_second(live):
    from idp.clock import FrozenClock

    user = _sign_in(live)
    exp = _claims(live, user["access_token"], "portal")["exp"]
    svc = live["env"].svc
    real = svc.clock
    try:
        svc.clock = FrozenClock(exp - 1)
        ok = _exchange(live, "api", subject_token=user["access_token"], subject_token_type=AT)
        assert ok.status_code == 200, ok.text
        assert ok.json()["expires_in"] == 1  # never outlives the subject token
        svc.clock = FrozenClock(exp)
        before = _state(live["env"])
        resp = _exchange(live, "api", subject_token=user["access_token"],
                         subject_token_type=AT)
        _assert_refused(live, resp, "invalid_request", "invalid_subject_token", before)
    finally:
        svc.clock = real


def test_a_token_signed_by_a_foreign_key_or_another_issuer_is_refused(live):
    from idp.oidc.server import engine

    user = _sign_in(live)
    claims = _claims(live, user["access_token"], "portal")
    kid = pyjwt.get_unverified_header(user["access_token"])["kid"]
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = pyjwt.encode(claims, foreign, algorithm="RS256",
                          headers={"kid": kid, "typ": "at+jwt"})
    before = _state(live["env"])
    resp = _exchange(live, "api", subject_token=forged, subject_token_type=AT)
    _assert_refused(live, resp, "invalid_request", "invalid_subject_token", before)
    # Our own key, but another issuer's name in the token.
    other = engine(live["env"].svc).signer.sign(dict(claims, iss="https://other.example.org"),
                                                typ="at+jwt")
    before = _state(live["env"])
    resp = _exchange(live, "api", subject_token=other, subject_token_type=JWT)
    _assert_refused(live, resp, "invalid_request", "invalid_subject_token", before)


@pytest.mark.parametrize("target, reason", [
    ({"audience": "https://evil.example.org/"}, "audience_not_allowed"),
    ({"resource": "https://unlisted.example.org/"}, "resource_not_allowed"),
    ({"resource": "not a uri"}, "resource_not_allowed"),
])
def test_an_audience_or_resource_not_allowed_is_invalid_target(live, target, reason):
    user = _sign_in(live)
    before = _state(live["env"])
    resp = _exchange(live, "api", subject_token=user["access_token"], subject_token_type=AT,
                     **target)
    _assert_refused(live, resp, "invalid_target", reason, before)


def test_scope_is_never_widened(live):
    user = _sign_in(live, scope="openid email")
    before = _state(live["env"])
    resp = _exchange(live, "api", subject_token=user["access_token"], subject_token_type=AT,
                     scope="openid email profile")
    _assert_refused(live, resp, "invalid_scope", "scope_widening", before)
    # A target client registered with fewer scopes narrows what may be asked for.
    user = _sign_in(live)
    before = _state(live["env"])
    resp = _exchange(live, "api", subject_token=user["access_token"], subject_token_type=AT,
                     audience="billing", scope="openid profile")
    _assert_refused(live, resp, "invalid_scope", "scope_not_allowed", before)


def test_impersonation_when_only_delegation_is_allowed(live):
    user = _sign_in(live)
    before = _state(live["env"])
    resp = _exchange(live, "deleg", subject_token=user["access_token"], subject_token_type=AT)
    _assert_refused(live, resp, "invalid_request", "impersonation_not_allowed", before)


def test_delegation_when_only_impersonation_is_allowed(live):
    user = _sign_in(live)
    before = _state(live["env"])
    resp = _exchange(live, "imper", subject_token=user["access_token"], subject_token_type=AT,
                     actor_token=_service_token(live, "imper"), actor_token_type=AT)
    _assert_refused(live, resp, "invalid_request", "delegation_not_allowed", before)


def test_an_invalid_actor_token_is_refused(live):
    user = _sign_in(live)
    for actor, reason in (("not-a-token", "invalid_actor_token"),
                          (_service_token(live, "worker"), "actor_token_of_another_client")):
        before = _state(live["env"])
        resp = _exchange(live, "api", subject_token=user["access_token"],
                         subject_token_type=AT, actor_token=actor, actor_token_type=AT)
        _assert_refused(live, resp, "invalid_request", reason, before)
    before = _state(live["env"])
    resp = _exchange(live, "api", subject_token=user["access_token"], subject_token_type=AT,
                     actor_token=_service_token(live, "api"))
    _assert_refused(live, resp, "invalid_request", "actor_token_type_mismatch", before)


def test_a_subject_of_a_client_not_accepted_is_refused(live):
    # The worker accepts tokens of the API only, not the portal's.
    user = _sign_in(live)
    before = _state(live["env"])
    resp = _exchange(live, "worker", subject_token=user["access_token"], subject_token_type=AT,
                     actor_token=_service_token(live, "worker"), actor_token_type=AT)
    _assert_refused(live, resp, "invalid_request", "subject_client_not_accepted", before)


def test_a_service_token_is_no_subject(live):
    before = _state(live["env"])
    resp = _exchange(live, "api", subject_token=_service_token(live, "api"),
                     subject_token_type=AT)
    _assert_refused(live, resp, "invalid_request", "subject_not_a_user", before)


def test_missing_or_unknown_parameters_are_invalid_request(live):
    user = _sign_in(live)
    for params, reason in (
        ({"subject_token": user["access_token"]}, "missing_subject_token"),
        ({"subject_token": user["access_token"], "subject_token_type": "urn:x"},
         "unsupported_subject_token_type"),
        ({"subject_token": user["access_token"], "subject_token_type": AT,
          "requested_token_type": "urn:ietf:params:oauth:token-type:saml2"},
         "unsupported_requested_token_type"),
    ):
        before = _state(live["env"])
        _assert_refused(live, _exchange(live, "api", **params), "invalid_request", reason,
                        before)


def test_the_exchanged_token_dies_with_the_subjects_grant(live):
    """Revoking the subject's grant (its refresh token, RFC 7009) ends the exchanged access
    token too: it carries the same grant family."""
    user = _sign_in(live)
    resp = _exchange(live, "api", subject_token=user["access_token"], subject_token_type=AT,
                     scope="openid")
    token = resp.json()["access_token"]
    revoked = requests.post(live["meta"]["revocation_endpoint"], timeout=10,
                            data={"token": user["refresh_token"],
                                  "token_type_hint": "refresh_token"},
                            auth=("portal", live["secrets"]["portal"]))
    assert revoked.status_code == 200
    info = requests.get(live["meta"]["userinfo_endpoint"], timeout=10,
                        headers={"Authorization": f"Bearer {token}"})
    assert info.status_code == 401


def test_dynamic_registration_cannot_grant_itself_a_policy(live):
    """RFC 7591: a client may register the grant, but the policy is an administrator's: the
    member is dropped, so every exchange it tries is refused."""
    from oidc_support import initial_access_token

    iat = initial_access_token(live["env"])
    made = requests.post(live["meta"]["registration_endpoint"], timeout=10,
                         headers={"Authorization": f"Bearer {iat}"},
                         json={"grant_types": [GRANT], "token_endpoint_auth_method":
                               "client_secret_basic", "scope": "openid email",
                               "token_exchange": {"accept_from": ["portal"],
                                                  "impersonation": True}})
    assert made.status_code == 201, made.text
    doc = made.json()
    assert "token_exchange" not in doc
    live["secrets"][doc["client_id"]] = doc["client_secret"]
    user = _sign_in(live)
    before = _state(live["env"])
    resp = _exchange(live, doc["client_id"], subject_token=user["access_token"],
                     subject_token_type=AT)
    _assert_refused(live, resp, "unauthorized_client", "no_policy", before)


def test_a_dpop_proof_binds_the_exchanged_token(live):
    """RFC 9449 on the exchange: the requesting client's proof binds the new access token to
    its key (cnf.jkt, token_type DPoP)."""
    from dpop_client import DPoPKey

    user = _sign_in(live)
    key = DPoPKey()
    url = live["meta"]["token_endpoint"]
    resp = requests.post(url, timeout=10, auth=("api", live["secrets"]["api"]),
                         headers={"DPoP": key.proof("POST", url)},
                         data={"grant_type": GRANT, "subject_token": user["access_token"],
                               "subject_token_type": AT, "resource": ORDERS})
    assert resp.status_code == 200, resp.text
    assert resp.json()["token_type"] == "DPoP"
    assert _claims(live, resp.json()["access_token"], ORDERS)["cnf"] == {"jkt": key.jkt}


@pytest.mark.parametrize("kind", [AT, "urn:ietf:params:oauth:token-type:id_token"])
def test_a_pairwise_clients_token_is_exchanged_for_its_user(live, kind):
    """A subject token of a pairwise client (OIDC Core §8.1) names the user by a sub only that
    client's sector sees; the exchange still finds the user, and the new token (for a public
    client) carries the user's own sub."""
    user = _sign_in(live, client_id="pw-portal")
    seen = _claims(live, user["access_token"], "pw-portal")["sub"]
    public = _claims(live, _sign_in(live)["access_token"], "portal")["sub"]
    assert seen != public
    subject = user["access_token"] if kind == AT else user["id_token"]
    api = OAuth2Session("api", live["secrets"]["api"])
    got = api.fetch_token(live["meta"]["token_endpoint"], grant_type=GRANT,
                          subject_token=subject, subject_token_type=kind, resource=ORDERS,
                          scope="openid")
    assert _claims(live, got["access_token"], ORDERS)["sub"] == public
