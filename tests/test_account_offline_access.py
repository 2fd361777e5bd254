"""Offline access on /account/apps: an application that got ``offline_access`` through a real
code flow is listed with when it was granted and last used; "Revoke offline access" (CSRF)
revokes its offline refresh tokens through the engine's one revocation, audited as
``token.revoked`` with the person as actor, and the refresh token is then refused at the token
endpoint. Another person posting the same form changes nothing (no IDOR)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from login_kit import GOOD, csrf, login, make_user, user_row
from sqlalchemy import select

from idp.storage.models import AuditEvent
from idp.storage.models_oauth import RefreshToken

CB = "https://mail.example.org/cb"


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request, make_app, clock):
    """The app on SQLite and on PostgreSQL (when IDP_TEST_DATABASE_URL is set)."""
    if request.param == "sqlite":
        return make_app(clock=clock)
    return make_app(clock=clock, database_url=request.getfixturevalue("pg_url"))


@pytest.fixture
def mail_secret(svc) -> str:
    from idp.manage import Actor, transaction
    from idp.manage import clients as manage_clients

    make_user(svc, "alice")
    make_user(svc, "bob")
    with transaction(svc, Actor.operator("test")) as ctx:
        _row, secret = manage_clients.create(
            ctx, "mail", name="Mail Reader", redirect_uris=[CB], first_party=True,
            grant_types=["authorization_code", "refresh_token"],
            scope="openid email offline_access")
    return secret


def _basic(secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"mail:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _offline_token(app, secret: str, username: str):
    """Sign ``username`` in and run the code flow with offline_access; (browser, tokens)."""
    browser = app.test_client()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    resp = browser.get("/oauth2/authorize", query_string={
        "response_type": "code", "client_id": "mail", "redirect_uri": CB,
        "scope": "openid email offline_access", "state": "s1",
        "code_challenge": challenge.decode().rstrip("="), "code_challenge_method": "S256"})
    rid = parse_qs(urlsplit(resp.headers["Location"]).query)["r"][0]
    resp = login(browser, username, GOOD, r=rid)
    while resp.status_code in (302, 303) and resp.headers["Location"].startswith("/"):
        resp = browser.get(resp.headers["Location"])
    code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    tokens = browser.post("/oauth2/token", headers=_basic(secret), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": CB,
        "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.get_data(as_text=True)
    assert "refresh_token" in tokens.json
    return browser, tokens.json


def _tokens_state(svc) -> list[tuple]:
    with svc.sessions() as db:
        return [(r.grant_id, r.user_id, r.revoked, r.used_at) for r in
                db.scalars(select(RefreshToken).order_by(RefreshToken.token_hash))]


def _revocations(svc) -> list[AuditEvent]:
    with svc.sessions() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.action == "token.revoked")).all()
        db.expunge_all()
        return list(rows)


def _refresh(app, secret: str, refresh_token: str):
    return app.test_client().post("/oauth2/token", headers=_basic(secret), data={
        "grant_type": "refresh_token", "refresh_token": refresh_token})


def test_offline_access_is_listed_and_revoked(app, svc, mail_secret):
    alice, tokens = _offline_token(app, mail_secret, "alice")
    page = alice.get("/account/apps").get_data(as_text=True)
    assert "Offline access" in page and "Mail Reader" in page
    assert "Revoke offline access" in page and 'name="client_id" value="mail"' in page
    assert "Granted" in page and "Last used" in page
    resp = alice.post("/account/apps/offline",
                      data={"csrf_token": csrf(page), "client_id": "mail"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/account/apps#offline")
    shown = alice.get("/account/apps").get_data(as_text=True)
    assert "Mail Reader no longer has offline access to your account." in shown
    assert "No application has offline access to your account." in shown
    refused = _refresh(app, mail_secret, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json["error"] == "invalid_grant"
    (event,) = _revocations(svc)
    uuid = user_row(svc, "alice").uuid
    assert event.actor == uuid and event.target == uuid
    assert event.details["reason"] == "account_offline_revoked"
    assert event.details["client_id"] == "mail" and event.details["offline"] is True
    assert event.ip  # stamped from the request
    assert tokens["refresh_token"] not in str(event.details)


def test_another_person_cannot_revoke_it(app, svc, mail_secret):
    _alice, tokens = _offline_token(app, mail_secret, "alice")
    bob = app.test_client()
    login(bob, "bob", GOOD)
    page = bob.get("/account/apps").get_data(as_text=True)
    assert "Mail Reader" not in page
    before = _tokens_state(svc)
    token = csrf(bob.get("/account/sessions").get_data(as_text=True))  # bob's own form token
    resp = bob.post("/account/apps/offline", data={"csrf_token": token, "client_id": "mail"})
    assert resp.status_code == 302
    assert "no longer had offline access" in bob.get("/account/apps").get_data(as_text=True)
    assert _tokens_state(svc) == before and not _revocations(svc)
    assert _refresh(app, mail_secret, tokens["refresh_token"]).status_code == 200


def test_without_the_form_token_nothing_is_revoked(app, svc, mail_secret):
    alice, _tokens = _offline_token(app, mail_secret, "alice")
    before = _tokens_state(svc)
    resp = alice.post("/account/apps/offline", data={"client_id": "mail"})
    assert resp.status_code == 400
    assert _tokens_state(svc) == before and not _revocations(svc)
    signed_out = app.test_client().post("/account/apps/offline", data={"client_id": "mail"})
    assert signed_out.status_code in (302, 303, 400)
    assert _tokens_state(svc) == before and not _revocations(svc)


def test_an_idle_family_is_no_longer_listed_to_the_second(app, svc, clock, mail_secret):
    """The list holds what the token endpoint would still honour: idle for
    ``oidc.refresh_idle_days`` it is gone, one second before it is there."""
    from idp.oidc.offline import offline_access

    _offline_token(app, mail_secret, "alice")
    alice_id = user_row(svc, "alice").id
    with svc.sessions() as db:
        last_used = db.scalar(select(RefreshToken.last_used_at)).timestamp()
    idle = svc.settings.oidc.refresh_idle_days * 86400
    clock.advance(last_used + idle - 1 - clock.now())
    assert [a.client_id for a in offline_access(svc, alice_id)] == ["mail"]
    clock.advance(1)
    assert offline_access(svc, alice_id) == []
