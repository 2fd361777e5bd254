"""Secrets at rest (issue 22, "Secrets"; docs/security.md "Secrets at rest and in output").

The IdP makes or takes passwords, client secrets (client_secret_basic and client_secret_jwt,
created and rotated), TOTP seeds, backup codes, authorization codes, access and refresh tokens,
password-reset tokens, RFC 7591 initial access tokens, upstream client secrets and SSO session
cookies (tests/sessions/test_session_ids_hashed.py looks at sessions closely): none of them
may be read back from a copy of the database (every column of every table, the embedded store's
table included). A mail waiting in the durable outbox carries a one-time link: it is kept
sealed until it is sent, and still delivered intact (a row written before sealing too).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import secret_watch
from login_kit import GOOD, login, make_user
from mfa_kit import enrol_totp
from sqlalchemy import select
from support import database_dump

from idp.sso.sessions import COOKIE

REDIRECT = "http://127.0.0.1:8765/cb"


class _Down:
    def send(self, msg):
        from idp.delivery.mail import MailError

        raise MailError("connection refused")


class _Up:
    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)


def _code_flow(app, client_id: str, secret: str) -> dict:
    """Sign in on the hosted page, authorize, redeem the code: the code, the tokens and the
    browser's SSO session cookie."""
    c = app.test_client()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid offline_access",
        "state": "s1",
        "code_challenge": challenge.decode().rstrip("="),
        "code_challenge_method": "S256",
    }
    resp = c.get("/oauth2/authorize", query_string=query)
    rid = parse_qs(urlsplit(resp.headers["Location"]).query)["r"][0]
    resp = login(c, "ann", GOOD, r=rid)
    while resp.status_code in (302, 303) and resp.headers["Location"].startswith("/"):
        resp = c.get(resp.headers["Location"])
    assert resp.status_code in (302, 303), (resp.status_code, resp.get_data(as_text=True)[:500])
    code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
    got = c.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(client_id, secret),
    )
    assert got.status_code == 200, got.get_data(as_text=True)
    assert got.json["refresh_token"]
    return {"code": code, "session cookie": c.get_cookie(COOKIE).value, **got.json}


def test_no_secret_the_idp_made_or_took_can_be_read_from_its_database(make_app):
    from idp.backends import backup_codes
    from idp.manage import Actor, transaction, upstreams
    from idp.manage import clients as manage_clients
    from idp.storage.tokens import OneTimeTokens

    app = make_app()
    svc = app.extensions["idp"]
    found: dict[str, str] = {"password": GOOD}
    uid = make_user(svc, "ann")
    bea = make_user(svc, "bea")  # a second factor for her; ann signs in with her password only
    found["totp seed"] = enrol_totp(svc, bea).secret
    with svc.sessions.begin() as db:
        for i, code in enumerate(backup_codes.regenerate(svc, db, bea)):
            found[f"backup code {i}"] = code
    with transaction(svc, Actor.operator("test")) as ctx:
        _, found["basic secret"] = manage_clients.create(
            ctx,
            "rp",
            name="RP",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            scope="openid offline_access",
            first_party=True,
        )
        _, found["jwt secret"] = manage_clients.create(
            ctx,
            "jwt-rp",
            name="JWT RP",
            redirect_uris=[REDIRECT],
            auth_method="client_secret_jwt",
        )
        found["initial access token"] = manage_clients.new_initial_access_token(ctx, 3600)
        upstreams.create(
            ctx,
            "up",
            "oauth2",
            {
                "display_name": "Up",
                "config": {
                    "client_id": "ours",
                    "authorization_endpoint": "https://up.example.org/auth",
                    "token_endpoint": "https://up.example.org/token",
                    "userinfo_endpoint": "https://up.example.org/user",
                },
            },
            secret="upstream-client-secret-0123456789",
        )
    found["upstream secret"] = "upstream-client-secret-0123456789"
    with transaction(svc, Actor.operator("test")) as ctx:
        found["rotated jwt secret"] = manage_clients.rotate_secret(ctx, "jwt-rp")
        found["rotated basic secret"] = manage_clients.rotate_secret(ctx, "rp", grace_seconds=600)
    tokens = _code_flow(app, "rp", found["rotated basic secret"])
    for name in ("code", "access_token", "refresh_token", "id_token", "session cookie"):
        found[name] = tokens[name]
    found["reset token"] = OneTimeTokens(svc.store, svc.hasher, 30).issue("reset", {"uid": uid})
    secret_watch.register(list(found.values()))

    dump = database_dump(svc)
    assert len(dump) > 10_000 and "ann@example.org" in dump  # the tables were read
    assert "upstream-client-secret" not in dump
    readable = [name for name, value in found.items() if value in dump]
    assert readable == [], f"stored readable: {readable}"


def test_a_queued_mail_is_sealed_in_the_outbox_and_sent_intact(make_app):
    from idp.delivery.mail import MailQueue
    from idp.storage.models_mail import MailOutbox

    svc = make_app().extensions["idp"]
    outbox = svc.mail_queue.outbox
    token = secrets.token_urlsafe(32)
    secret_watch.register(token)
    link = f"https://idp.example.org/password/reset/{token}"
    first = MailQueue(_Down(), outbox, attempts=5, retry_seconds=0.1, timeout=5)
    first.put("reset", lambda: svc.mailer.compose("ann@example.org", "Reset", f"Open {link}"))
    assert not first.wait_idle(0.5)
    first.stop()
    with svc.sessions() as db:
        (stored,) = db.scalars(select(MailOutbox.message)).all()
    assert stored.startswith(b"v1:")
    assert token.encode() not in stored and b"ann@example.org" not in stored

    up = _Up()
    second = MailQueue(up, outbox, attempts=5, retry_seconds=0.1, timeout=5, poll_seconds=0.05)
    second.start()
    try:
        assert second.wait_idle(10)
    finally:
        second.stop()
    (sent,) = up.sent
    assert link in sent.get_body(("plain",)).get_content()
    assert sent["To"] == "ann@example.org"
    assert outbox.pending() == (0, None)


def test_a_mail_queued_before_sealing_is_still_sent(make_app):
    from idp.delivery.mail import MailQueue
    from idp.storage.models_mail import MailOutbox

    svc = make_app().extensions["idp"]
    msg = svc.mailer.compose("bob@example.org", "Hello", "queued by an older version")
    now = svc.clock.utcnow()
    with svc.sessions.begin() as db:
        db.add(MailOutbox(name="hello", state="queued", message=bytes(msg), due_at=now))
    up = _Up()
    queue = MailQueue(
        up, svc.mail_queue.outbox, attempts=5, retry_seconds=0.1, timeout=5, poll_seconds=0.05
    )
    queue.start()
    try:
        assert queue.wait_idle(10)
    finally:
        queue.stop()
    (sent,) = up.sent
    assert "queued by an older version" in sent.get_body(("plain",)).get_content()


def test_a_mail_sealed_under_another_key_is_marked_failed_not_sent(make_app):
    from idp.crypto import Sealer
    from idp.storage.mail_outbox import SqlOutbox
    from idp.storage.models_mail import MailOutbox

    svc = make_app().extensions["idp"]
    outbox = svc.mail_queue.outbox
    elsewhere = SqlOutbox(
        svc.sessions, svc.clock.utcnow, 60, sealer=Sealer(secrets.token_bytes(32))
    )
    sealed = elsewhere._seal(1, b"Subject: x\r\n\r\nbody")
    with svc.sessions.begin() as db:
        db.add(
            MailOutbox(id=1, name="x", state="queued", message=sealed, due_at=svc.clock.utcnow())
        )
    assert outbox.claim("me") is None
    with svc.sessions() as db:
        row = db.get(MailOutbox, 1)
        assert (row.state, row.message, row.lease_owner) == ("failed", None, None)
        assert "key" in row.last_error
