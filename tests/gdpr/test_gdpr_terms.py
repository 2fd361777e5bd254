"""Versioned terms / privacy policy acceptance at sign-in (``[gdpr] terms_version``): a user who
has not accepted the version in force gets a step after their factors; accepting records the
version and time (audited, in their export and on the console's user page) and the sign-in
goes on; declining ends it with a clear page and no session. A new version asks again; an empty
version asks nobody."""

from __future__ import annotations

from admin_kit import make_admin
from login_kit import GOOD, csrf, login, make_user
from sqlalchemy import func, select

from idp.storage.models import AuditEvent
from idp.storage.models_auth import SsoSessionIndex
from idp.storage.models_gdpr import TermsAcceptance

TERMS = {
    "terms_version": "2024-05",
    "terms_url": "https://example.org/terms",
    "privacy_url": "https://example.org/privacy",
}


def _sessions(svc) -> int:
    with svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(SsoSessionIndex))


def _step(client, choice: str):
    page = client.get("/login/step").get_data(as_text=True)
    return client.post("/login/step", data={"csrf_token": csrf(page), choice: "1"})


def test_accepting_records_the_version_and_signs_in(make_app, clock):
    app = make_app(clock=clock, gdpr=TERMS)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    resp = login(client, "ann", GOOD)
    assert resp.headers["Location"].endswith("/login/step")
    page = client.get("/login/step").get_data(as_text=True)
    assert "2024-05" in page and "https://example.org/privacy" in page
    assert _sessions(svc) == 0  # no SSO session before the step passed
    done = _step(client, "accept")
    assert done.status_code in (302, 303) and _sessions(svc) == 1
    assert client.get("/account/").status_code == 200
    with svc.sessions() as db:
        rows = db.execute(select(TermsAcceptance.version, TermsAcceptance.accepted_at)).all()
        assert [r.version for r in rows] == ["2024-05"]
        assert rows[0].accepted_at == svc.clock.utcnow()
        event = db.scalar(select(AuditEvent).where(AuditEvent.action == "gdpr.terms_accepted"))
        assert event.details == {"version": "2024-05"}
    export = client.get("/account/export").json
    assert export["terms"][0]["version"] == "2024-05"
    # The next sign-in does not ask again.
    again = login(app.test_client(), "ann", GOOD)
    assert not again.headers["Location"].endswith("/login/step")


def test_declining_ends_the_sign_in(make_app):
    app = make_app(gdpr=TERMS)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    login(client, "ann", GOOD)
    resp = _step(client, "decline")
    assert resp.status_code == 401
    assert "did not accept the terms" in resp.get_data(as_text=True)
    assert _sessions(svc) == 0
    with svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(TermsAcceptance)) == 0
    assert client.get("/account/").status_code in (302, 303)
    # The pending sign-in is gone: posting "accept" now does not sign in.
    assert client.get("/login/step").status_code != 200 or _sessions(svc) == 0
    assert _sessions(svc) == 0


def test_new_version_asks_again_and_shows_on_the_console(make_app):
    app = make_app(gdpr=TERMS)
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    client = app.test_client()
    login(client, "ann", GOOD)
    _step(client, "accept")
    app2 = make_app(gdpr={**TERMS, "terms_version": "2025-01"})
    c2 = app2.test_client()
    assert login(c2, "ann", GOOD).headers["Location"].endswith("/login/step")
    _step(c2, "accept")
    make_admin(svc, "root")
    admin = app2.test_client()
    login(admin, "root", GOOD)
    _step(admin, "accept")  # the administrator accepts too
    uuid = client.get("/account/export").json["profile"]["uuid"]
    page = admin.get(f"/admin/users/{uuid}").get_data(as_text=True)
    assert "version 2025-01" in page and "version 2024-05" in page


def test_no_version_no_step(app, svc):
    make_user(svc, "ann")
    resp = login(app.test_client(), "ann", GOOD)
    assert not resp.headers["Location"].endswith("/login/step")
