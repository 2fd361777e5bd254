"""WebAuthn registration (W3C WebAuthn section 7.1) on the account page over HTTP, with a software
authenticator building real "none" and "packed" self-attestations (ES256 and EdDSA), and the
management of several named authenticators: list, rename, remove, re-authentication first.
Every refused request leaves the credential table, the session and the mail outbox as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
from login_kit import GOOD, audit_actions, login, make_user, outbox, post_form, user_row
from sqlalchemy import func, select
from webauthn_kit import (
    ORIGIN,
    SoftAuthenticator,
    json_post,
    mfa_page,
    mfa_submit,
    page_csrf,
    register,
    register_options,
)

from idp.backends.webauthn import method_of
from idp.clock import FrozenClock
from idp.storage.models import AuditEvent
from idp.storage.models_webauthn import WebAuthnCredential


@pytest.fixture
def clock():
    return FrozenClock()


@pytest.fixture
def ann(app, svc):
    """Ann, signed in with her password just now (no second factor yet)."""
    make_user(svc, "ann", given_name="Ann")
    client = app.test_client()
    assert login(client, "ann", GOOD).headers["Location"] == "/account/"
    return client


def creds(svc, username: str | None = None) -> list[WebAuthnCredential]:
    with svc.sessions() as db:
        q = select(WebAuthnCredential).order_by(WebAuthnCredential.id)
        if username:
            q = q.where(WebAuthnCredential.user_id == user_row(svc, username).id)
        rows = list(db.scalars(q))
        for r in rows:
            db.expunge(r)
        return rows


def n_creds(svc) -> int:
    with svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(WebAuthnCredential))


@pytest.mark.parametrize(
    "alg, fmt, attachment, transports, backup, amr",
    [
        (-7, "none", "cross-platform", ["usb", "nfc"], False, "hwk"),
        (-7, "packed", "platform", ["internal"], False, "swk"),
        (-8, "packed", "cross-platform", ["usb"], False, "hwk"),
        (-8, "none", "cross-platform", ["hybrid"], True, "swk"),  # a synced passkey
    ],
)
def test_register_stores_the_credential_with_its_method(
    svc, ann, alg, fmt, attachment, transports, backup, amr
):
    auth = SoftAuthenticator(
        alg=alg, attachment=attachment, transports=transports, backup_eligible=backup
    )
    resp = register(ann, auth, name="Blue key", fmt=fmt)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"ok": True, "redirect": "/account/webauthn"}
    (row,) = creds(svc, "ann")
    assert row.name == "Blue key" and row.amr == amr
    assert row.attestation_format == fmt and row.transports == transports
    assert row.attachment == attachment and row.backup_eligible is backup
    assert row.discoverable is True and row.sign_count == 0
    assert row.aaguid == "00000000-0000-0000-0000-000000000000"
    assert row.user_id == user_row(svc, "ann").id
    assert "webauthn.registered" in audit_actions(svc)
    mail = outbox(svc)[-1]
    assert mail["To"] == "ann@example.org" and "added" in mail["Subject"]
    page = ann.get("/account/webauthn").get_data(as_text=True)
    assert "Blue key" in page and "Passkey" in page


def test_options_follow_the_settings_and_exclude_existing_keys(svc, ann):
    register(ann, SoftAuthenticator(), name="First")
    _, opts = register_options(ann)
    body = opts.get_json()
    assert body["rp"] == {"id": "127.0.0.1", "name": "IdP"}
    assert body["user"]["name"] == "ann" and body["user"]["displayName"] == "Ann"
    assert body["authenticatorSelection"]["residentKey"] == "preferred"
    assert body["authenticatorSelection"]["userVerification"] == "preferred"
    assert body["attestation"] == "none" and body["extensions"] == {"credProps": True}
    assert [c["id"] for c in body["excludeCredentials"]] == [creds(svc)[0].credential_id]


def test_several_named_authenticators_rename_and_remove(svc, ann):
    register(ann, SoftAuthenticator(), name="Work key")
    register(
        ann, SoftAuthenticator(alg=-8, attachment="platform", transports=["internal"]), name=""
    )
    rows = creds(svc, "ann")
    assert [r.name for r in rows] == ["Work key", "Passkey"]  # unnamed: a default name
    first = rows[0]
    resp = post_form(
        ann,
        f"/account/webauthn/{first.id}/rename",
        {"name": "  Yubikey  "},
        page="/account/webauthn",
    )
    assert resp.status_code == 302
    assert creds(svc, "ann")[0].name == "Yubikey"
    resp = post_form(ann, f"/account/webauthn/{first.id}/delete", {}, page="/account/webauthn")
    assert resp.status_code == 302
    assert [r.name for r in creds(svc, "ann")] == ["Passkey"]
    assert {"webauthn.renamed", "webauthn.removed"} <= set(audit_actions(svc))
    assert "removed" in outbox(svc)[-1]["Subject"]


def test_adding_and_removing_need_a_recent_sign_in(svc, ann, clock):
    key = SoftAuthenticator()
    register(ann, key, name="Key")
    (row,) = creds(svc)
    clock.advance(6 * 60)
    page = ann.get("/account/webauthn").get_data(as_text=True)
    assert "Sign in again" in page and "/login?prompt=login" in page
    before_mail = len(outbox(svc))
    csrf = page_csrf(page)
    opts = json_post(ann, "/webauthn/register/options", csrf, {})
    assert opts.status_code == 403 and opts.get_json()["error"] == "reauth"
    assert "prompt=login" in opts.get_json()["redirect"]
    resp = post_form(ann, f"/account/webauthn/{row.id}/delete", {}, page="/account/webauthn")
    assert resp.status_code == 403
    assert n_creds(svc) == 1 and len(outbox(svc)) == before_mail
    # Signing in again makes the change possible.
    again = post_form(
        ann,
        "/login",
        {"username": "ann", "password": GOOD, "next": "/account/webauthn"},
        page="/login?prompt=login&next=/account/webauthn",
    )
    assert again.headers["Location"] == "/login/step"  # she has a key: it is the second factor
    csrf, options = mfa_page(ann)
    done = mfa_submit(ann, csrf, key.get(options, ORIGIN))
    assert done.headers["Location"] == "/account/webauthn"
    assert register(ann, SoftAuthenticator(), name="Second").status_code == 200
    assert n_creds(svc) == 2


def test_another_users_credential_cannot_be_renamed_or_removed(app, svc, ann):
    register(ann, SoftAuthenticator(), name="Ann's key")
    (row,) = creds(svc)
    make_user(svc, "bob")
    bob = app.test_client()
    login(bob, "bob", GOOD)
    for action, data in (("rename", {"name": "mine"}), ("delete", {})):
        resp = post_form(bob, f"/account/webauthn/{row.id}/{action}", data, page="/account/profile")
        assert resp.status_code == 404
    (after,) = creds(svc)
    assert after.name == "Ann's key" and after.user_id == row.user_id


def test_the_last_factor_of_a_user_who_must_use_mfa_stays(svc, ann):
    register(ann, SoftAuthenticator(), name="Only key")
    with svc.sessions.begin() as db:
        db.get(type(user_row(svc, "ann")), user_row(svc, "ann").id).require_mfa = True
    (row,) = creds(svc)
    resp = post_form(ann, f"/account/webauthn/{row.id}/delete", {}, page="/account/webauthn")
    assert resp.status_code == 400 and "set up another one" in resp.get_data(as_text=True)
    assert n_creds(svc) == 1


# --- hostile registrations: refused, and nothing stored ----------------------------------------


def _refused(svc, resp, error: str, status: int = 400) -> None:
    assert resp.status_code == status, resp.get_json()
    assert resp.get_json()["error"] == error
    assert n_creds(svc) == 0
    assert "webauthn.registered" not in audit_actions(svc)
    assert not any("added" in m["Subject"] for m in outbox(svc))


def test_wrong_origin_is_refused(svc, ann):
    _refused(svc, register(ann, SoftAuthenticator(), origin="http://evil.example"), "invalid")


def test_wrong_rp_id_is_refused(svc, ann):
    _refused(svc, register(ann, SoftAuthenticator(), rp_id="evil.example"), "invalid")


def test_replayed_registration_is_refused(svc, ann):
    csrf, opts = register_options(ann)
    auth = SoftAuthenticator()
    cred = auth.create(opts.get_json(), ORIGIN)
    first = json_post(ann, "/webauthn/register/verify", csrf, {"credential": cred})
    assert first.status_code == 200
    with svc.sessions.begin() as db:
        db.query(WebAuthnCredential).delete()
        db.query(AuditEvent).filter(AuditEvent.action == "webauthn.registered").delete()
    (Path(svc.settings.instance_dir) / "outbox").rename(Path(svc.settings.instance_dir) / "sent")
    again = json_post(ann, "/webauthn/register/verify", csrf, {"credential": cred})
    _refused(svc, again, "expired")


def test_challenge_of_another_session_is_refused(app, svc, ann):
    csrf, opts = register_options(ann)
    cred = SoftAuthenticator().create(opts.get_json(), ORIGIN)
    make_user(svc, "eve")
    eve = app.test_client()
    login(eve, "eve", GOOD)
    eve_csrf = page_csrf(eve.get("/account/webauthn").get_data(as_text=True))
    resp = json_post(eve, "/webauthn/register/verify", eve_csrf, {"credential": cred})
    _refused(svc, resp, "invalid")


def test_missing_csrf_token_and_foreign_origin_header_are_refused(svc, ann):
    _, opts = register_options(ann)
    cred = SoftAuthenticator().create(opts.get_json(), ORIGIN)
    no_token = json_post(ann, "/webauthn/register/verify", "", {"credential": cred})
    _refused(svc, no_token, "csrf")
    csrf = page_csrf(ann.get("/account/webauthn").get_data(as_text=True))
    cross = json_post(
        ann, "/webauthn/register/verify", csrf, {"credential": cred}, origin="https://evil.example"
    )
    _refused(svc, cross, "forbidden", 403)


def test_garbage_and_unsupported_attestation_are_refused(svc, ann):
    csrf, opts = register_options(ann)
    for body in ({"credential": "not json"}, {"credential": {"response": {}}}, {}):
        _refused(svc, json_post(ann, "/webauthn/register/verify", csrf, body), "invalid")
    cred = SoftAuthenticator().create(opts.get_json(), ORIGIN, fmt="fido-u2f")
    _refused(
        svc, json_post(ann, "/webauthn/register/verify", csrf, {"credential": cred}), "invalid"
    )


def test_signed_out_browser_cannot_register(app, svc):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    resp = json_post(client, "/webauthn/register/options", page_csrf(page), {})
    assert resp.status_code == 401 and n_creds(svc) == 0


def test_aaguid_allow_list(make_app):
    app = make_app(webauthn={"allowed_aaguids": ["cb69481e-8ff7-4039-93ec-0a2729a154a8"]})
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    login(client, "ann", GOOD)
    _refused(svc, register(client, SoftAuthenticator()), "not_allowed")


def test_bad_settings_stop_the_start(make_app):
    from idp.errors import ConfigError

    with pytest.raises(ConfigError, match="webauthn.user_verification"):
        make_app(webauthn={"user_verification": "sometimes"})


def test_method_of_unknown_attachment_claims_the_weaker_method():
    assert method_of(None, ["usb"], False) == "hwk"
    assert method_of(None, ["usb", "internal"], False) == "swk"
    assert method_of(None, [], False) == "swk"
    assert method_of("cross-platform", ["usb"], True) == "swk"
