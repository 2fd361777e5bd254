"""The console's side of suspicious activity (docs/risk.md): the dashboard counts security.*
rows of the last 24 hours and links to the audit log filtered to them; the [risk] settings are
a section of the settings screen, applied live (a change turns adaptive authentication on)."""

from __future__ import annotations

from admin_kit import console_csrf, make_admin, signed_in
from login_kit import login, make_user
from sqlalchemy import select

from idp.settings import load_defaults
from idp.storage.models import AuditEvent


def _stuff(app, n: int) -> None:
    for i in range(n):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = "198.51.100.9"
        login(client, f"ghost{i}", "wrong")


def test_dashboard_card_and_audit_preset_show_security_events(make_app, clock):
    app = make_app(clock=clock, lockout={"ip_delay_after": 0}, risk={"stuffing_accounts": 3})
    svc = app.extensions["idp"]
    make_admin(svc)
    root = signed_in(app)
    html = root.get("/admin/").get_data(as_text=True)
    assert "Security events in the last 24 hours" in html
    _stuff(app, 3)
    html = root.get("/admin/").get_data(as_text=True)
    card = html.split("Security events in the last 24 hours", 1)[1]
    assert '<p class="stat">1</p>' in card.split("</div>", 1)[0]
    assert "/admin/audit?action=security." in html
    assert "Many accounts failed from one address" in html  # among the recent events
    listed = root.get("/admin/audit?action=security.").get_data(as_text=True)
    assert '<option value="security." selected>' in listed
    rows = listed.split("<tbody", 1)[1]
    assert "security.credential_stuffing" in rows and "login.failure" not in rows
    clock.advance(86400 + 1)
    root = signed_in(app)  # the console session ended meanwhile
    html = root.get("/admin/").get_data(as_text=True)
    card = html.split("Security events in the last 24 hours", 1)[1]
    assert '<p class="stat">0</p>' in card.split("</div>", 1)[0]


def test_risk_settings_are_edited_live_and_bad_values_refused(make_app):
    app = make_app()
    svc = app.extensions["idp"]
    make_admin(svc)
    make_user(svc, "ann")
    root = signed_in(app)
    page = root.get("/admin/settings").get_data(as_text=True)
    assert 'id="risk"' in page and 'name="risk.deny_at"' in page
    form = {
        f"risk.{k}": str(v) for k, v in load_defaults()["risk"].items() if not isinstance(v, bool)
    }
    form.update({"risk.adaptive": "on", "risk.new_country": "on", "risk.refresh_replay": "on"})
    bad = dict(form, **{"risk.deny_at": "-5", "csrf_token": console_csrf(root, "/admin/settings")})
    assert root.post("/admin/settings/risk", data=bad).status_code == 400
    assert svc.settings.risk.adaptive is False
    good = dict(form, csrf_token=console_csrf(root, "/admin/settings"))
    assert root.post("/admin/settings/risk", data=good).status_code == 302
    assert "saved" in root.get("/admin/settings").get_data(as_text=True)  # the next request
    assert svc.settings.risk.adaptive is True
    with svc.sessions() as db:
        changed = db.scalars(
            select(AuditEvent.target).where(AuditEvent.action == "config.policy_set")
        ).all()
    assert changed == ["risk.adaptive"]
    # Applied on the next sign-in: its audit row now carries the score.
    assert login(app.test_client(), "ann", "Tr0ub4dor-Horse-Battery").status_code == 302
    with svc.sessions() as db:
        row = db.scalars(select(AuditEvent).where(AuditEvent.action == "login.success")).all()[-1]
    assert row.details["risk"] == {"score": 0, "reasons": []}
