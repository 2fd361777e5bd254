"""Helpers for the GDPR tests: a user with something in every table that can hold a person's
data, and a scan of every string value of every table for traces of them."""

from __future__ import annotations

import io
import json
from datetime import timedelta

from login_kit import GOOD, login, make_user, post_form
from PIL import Image
from sqlalchemy import inspect, text

from idp.manage import Actor, photos, transaction
from idp.manage import clients as manage_clients
from idp.storage import terms
from idp.storage.directory import Directory
from idp.storage.models import User
from idp.storage.models_gdpr import DeletionRequest
from idp.storage.models_mfa import MfaBackupCode, MfaOtpChannel, MfaRememberedDevice, MfaTotp
from idp.storage.models_oauth import Consent, RefreshToken
from idp.storage.models_webauthn import WebAuthnCredential

PERSON = {
    "username": "erin.quaintance",
    "email": "erin.quaintance@example.org",
    "given_name": "Erinna",
    "family_name": "Quaintance",
    "phone": "+4915112345678",
}
NEW_EMAIL = "erin.elsewhere@example.org"


def needles() -> list[str]:
    return [PERSON["username"], PERSON["email"], PERSON["phone"], "Erinna", "Quaintance", NEW_EMAIL]


def _picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (240, 240), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def rich_user(app) -> dict:
    """A user with a session, a pending e-mail change, a reset link, audit rows, a picture,
    custom data, a group, a role, every second factor, a remembered device, a refresh token,
    a consent, an accepted terms version and a deletion request. Returns uuid, id, the signed-in
    client and the picture's file."""
    svc = app.extensions["idp"]
    user_id = make_user(
        svc,
        PERSON["username"],
        email=PERSON["email"],
        given_name=PERSON["given_name"],
        family_name=PERSON["family_name"],
        display_name="Erinna Quaintance",
        phone=PERSON["phone"],
        custom={"nickname": "Erinna"},
    )
    client = app.test_client()
    assert login(client, PERSON["username"], GOOD).status_code in (302, 303)
    # A pending e-mail change (an address and a link in the store) and a reset link.
    post_form(
        client,
        "/account/email",
        {"new_email": NEW_EMAIL, "password": GOOD},
        page="/account/profile",
    )
    post_form(app.test_client(), "/password/reset", {"email": PERSON["email"]})
    now = svc.clock.utcnow()
    with transaction(svc, Actor.operator("test")) as ctx:
        manage_clients.create(
            ctx,
            "shop",
            name="Shop",
            grant_types=["authorization_code"],
            redirect_uris=["https://shop.example/cb"],
        )
    name = photos.store(svc, _picture())
    with svc.sessions.begin() as db:
        d = Directory(db, svc.clock)
        user = db.get(User, user_id)
        user.avatar = name
        group = d.create_group("erins-team")
        d.add_member(group, user)
        d.assign_role(user, d.role_by_name("Auditor"))
        db.add(MfaTotp(user_id=user_id, secret_sealed="sealed", name="Erinna's phone"))
        db.add(MfaBackupCode(user_id=user_id, code_hash="h1"))
        db.add(MfaOtpChannel(user_id=user_id, kind="sms", destination=PERSON["phone"]))
        db.add(
            MfaRememberedDevice(
                user_id=user_id,
                token_hash="rd1",
                expires_at=now + timedelta(days=30),
                user_agent="Erinna's laptop",
                ip="198.51.100.7",
            )
        )
        db.add(
            WebAuthnCredential(
                user_id=user_id, credential_id="cred-erin", public_key=b"k", name="Erinna's key"
            )
        )
        db.add(
            RefreshToken(
                token_hash="rt-erin",
                grant_id="g1",
                client_id="shop",
                user_id=user_id,
                scope="openid",
                expires_at=now + timedelta(days=9),
            )
        )
        db.add(Consent(user_id=user_id, client_id="shop", scopes=["openid", "email"]))
        terms.record(db, user_id, "2024-05", at=now)
        db.add(DeletionRequest(user_id=user_id, user_uuid=user.uuid, created_at=now))
        uuid = user.uuid
    return {"uuid": uuid, "id": user_id, "client": client, "picture": photos.directory(svc) / name}


def traces(svc, words: list[str] | None = None) -> list[str]:
    """Every table cell (any column type, JSON included) that contains one of ``words``, once
    the mail queued so far has gone out: a mail to the person (telling them of the erasure)
    holds their address in mail_outbox until it is delivered, and the row goes with it."""
    assert svc.mail_queue.wait_idle(15), "mail still queued after 15 s"
    words = [w.lower() for w in (words or needles())]
    found = []
    with svc.engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            # Table names come from the database's own catalogue, not from input.
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608
                for value in row:
                    if value is None:
                        continue
                    shown = value if isinstance(value, str) else json.dumps(value, default=str)
                    if isinstance(value, bytes):
                        shown = value.decode("latin-1")
                    if any(w in shown.lower() for w in words):
                        found.append(f"{table}: {shown[:200]}")
    return found
