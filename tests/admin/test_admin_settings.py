"""The console's settings screen (/admin/settings) and /api/v1/settings: policy settings kept in
the database, checked with the settings' own rules, audited old -> new, applied without a
restart (the same app's next request, and a second app on the same database), environment
values read-only, send-test mail and SMS."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from admin_kit import console_csrf, make_admin, signed_in
from directory_api_kit import snapshot
from login_kit import outbox
from sqlalchemy import select

from idp.storage.models import AuditEvent

PW_FORM = {
    "password_policy.mode": "classic",
    "password_policy.min_length": "14",
    "password_policy.max_length": "128",
    "password_policy.require_upper": "on",
    "password_policy.require_lower": "on",
    "password_policy.require_digit": "on",
    "password_policy.block_common": "on",
    "password_policy.block_personal": "on",
    "password_policy.max_age_days": "0",
    "password_policy.warn_days": "14",
    "password_policy.history": "5",
    "password_policy.min_age_minutes": "0",
}


@pytest.fixture
def root(app):
    make_admin(app.extensions["idp"])
    return signed_in(app)


def _post(client, path: str, data: dict, csrf: bool = True):
    form = dict(data)
    if csrf:
        form["csrf_token"] = console_csrf(client, "/admin/settings")
    return client.post(path, data=form)


def _events(svc, action: str) -> list[AuditEvent]:
    with svc.sessions() as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_the_screen_shows_every_section_with_the_values_in_effect(root):
    html = root.get("/admin/settings").get_data(as_text=True)
    for title in ("Password policy", "Lockout", "Multi-factor authentication", "Sessions"):
        assert title in html
    assert 'id="registration"' in html and 'id="branding"' in html
    assert 'name="password_policy.min_length"' in html and 'value="10"' in html
    assert 'href="/admin/settings" aria-current="page"' in html


def test_a_change_is_stored_audited_and_applies_on_the_next_request(app, root):
    svc = app.extensions["idp"]
    response = _post(root, "/admin/settings/password_policy", PW_FORM)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/settings#password_policy")
    page = root.get("/admin/settings").get_data(as_text=True)
    assert "saved" in page and "Stored in the database." in page
    assert svc.settings.password_policy.min_length == 14
    (event,) = _events(svc, "config.policy_set")
    assert event.target == "password_policy.min_length"
    assert event.details["old"] == 10 and event.details["new"] == 14
    # Unchanged values are neither stored nor audited; a second identical save changes nothing.
    before = snapshot(svc)
    assert _post(root, "/admin/settings/password_policy", PW_FORM).status_code == 302
    assert "Nothing changed." in root.get("/admin/settings").get_data(as_text=True)
    assert len(_events(svc, "config.policy_set")) == 1
    assert snapshot(svc)["applied_settings"] == before["applied_settings"]


def test_a_second_app_on_the_same_database_applies_the_change_without_a_restart(
    make_app, app, root
):
    other = make_app()  # another worker / node on the same database, built before the change
    other_svc = other.extensions["idp"]
    assert other_svc.settings.password_policy.min_length == 10
    form = {
        "branding.product_name": "Acme ID",
        "branding.logo_url": "",
        "branding.primary_color": "#0b5394",
        "branding.background_color": "#f5f6f8",
        "branding.text_color": "#1b1f24",
        "branding.support_text": "Help: +49 30 1234",
        "branding.languages": "en\nde",
    }
    assert _post(root, "/admin/settings/branding", form).status_code == 302
    assert _post(root, "/admin/settings/password_policy", PW_FORM).status_code == 302
    html = other.test_client().get("/login").get_data(as_text=True)
    assert "Acme ID" in html and "Help: +49 30 1234" in html
    assert other_svc.settings.password_policy.min_length == 14
    assert other_svc.mailer.product_name == "Acme ID"


def test_other_workers_read_the_generation_once_per_poll_window(make_app, monkeypatch):
    """Production reads the settings generation at most once per reload_poll_seconds (not a
    database round trip on every request); the worker that made the change applies it at once,
    another one once its window has passed."""
    import idp.manage.policies as policies_module

    now = [1000.0]
    monkeypatch.setattr(policies_module.time, "monotonic", lambda: now[0])
    polled = {"server": {"reload_poll_seconds": 5}}
    app = make_app(**polled)
    other = make_app(**polled)  # another worker / node on the same database
    make_admin(app.extensions["idp"])
    root = signed_in(app)
    other.test_client().get("/login")  # its first read of the generation
    assert _post(root, "/admin/settings/password_policy", PW_FORM).status_code == 302
    assert app.extensions["idp"].settings.password_policy.min_length == 14  # its own: at once
    other_svc = other.extensions["idp"]
    now[0] += 4.9
    other.test_client().get("/login")
    assert other_svc.settings.password_policy.min_length == 10  # inside the window: not read
    now[0] += 0.2
    other.test_client().get("/login")
    assert other_svc.settings.password_policy.min_length == 14


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("password_policy.min_length", "ten", "Enter a whole number."),
        ("password_policy.min_length", "500", "at most max_length"),
        ("password_policy.history", "-1", "must not be negative"),
    ],
)
def test_bad_values_are_refused_beside_the_field_and_nothing_is_stored(
    app, root, field, value, message
):
    svc = app.extensions["idp"]
    root.get("/admin/settings")
    before = snapshot(svc)
    response = _post(root, "/admin/settings/password_policy", {**PW_FORM, field: value})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    field_id = field.replace(".", "-").replace("_", "-")
    error = re.search(rf'<p class="field-error" id="{field_id}-error">([^<]*)</p>', html)
    assert error and message in error.group(1)
    assert f'aria-describedby="{field_id}-error"' in html
    assert "Nothing was saved" in html
    assert snapshot(svc) == before
    assert svc.settings.password_policy.min_length == 10


def test_a_bad_colour_and_a_bad_address_are_refused(app, root):
    svc = app.extensions["idp"]
    root.get("/admin/settings")
    before = snapshot(svc)
    response = _post(
        root,
        "/admin/settings/branding",
        {
            "branding.product_name": "X",
            "branding.primary_color": "red;}body{display:none",
            "branding.background_color": "#ffffff",
            "branding.text_color": "#000000",
            "branding.languages": "en",
        },
    )
    assert response.status_code == 400
    assert 'id="branding-primary-color-error"' in response.get_data(as_text=True)
    response = _post(
        root,
        "/admin/settings/registration",
        {"registration.enabled": "on", "registration.admin_emails": "not-an-address"},
    )
    assert response.status_code == 400
    assert 'id="registration-admin-emails-error"' in response.get_data(as_text=True)
    assert snapshot(svc) == before


def test_a_value_set_by_the_environment_is_read_only(monkeypatch, make_app):
    monkeypatch.setenv("IDP_PASSWORD_POLICY_MIN_LENGTH", "12")
    app = make_app()
    svc = app.extensions["idp"]
    make_admin(svc)
    client = signed_in(app)
    html = client.get("/admin/settings").get_data(as_text=True)
    field = re.search(r'<input[^>]*name="password_policy.min_length"[^>]*>', html).group(0)
    assert "disabled" in field and 'value="12"' in field
    assert "IDP_PASSWORD_POLICY_MIN_LENGTH" in html
    before = snapshot(svc)
    response = _post(client, "/admin/settings/password_policy", {**PW_FORM})
    assert response.status_code == 400
    assert "IDP_PASSWORD_POLICY_MIN_LENGTH" in response.get_data(as_text=True)
    assert snapshot(svc) == before
    # Without it the rest of the section saves; the environment's value stays in force.
    form = {k: v for k, v in PW_FORM.items() if k != "password_policy.min_length"}
    assert (
        _post(
            client, "/admin/settings/password_policy", {**form, "password_policy.history": "7"}
        ).status_code
        == 302
    )
    client.get("/admin/settings")
    assert svc.settings.password_policy.history == 7
    assert svc.settings.password_policy.min_length == 12


def test_a_change_without_the_csrf_token_is_refused(app, root):
    svc = app.extensions["idp"]
    root.get("/admin/settings")
    before = snapshot(svc)
    response = _post(root, "/admin/settings/password_policy", PW_FORM, csrf=False)
    assert response.status_code == 400
    assert snapshot(svc) == before


@pytest.mark.parametrize("template", ["Helpdesk", "Auditor"])
def test_roles_without_config_policies_read_get_403(app, template):
    make_admin(app.extensions["idp"], "op", role=template)
    client = signed_in(app, "op")
    assert client.get("/admin/settings").status_code == 403
    assert "/admin/settings" not in client.get("/admin/").get_data(as_text=True)


def test_read_only_sees_the_settings_but_cannot_change_them(app):
    svc = app.extensions["idp"]
    make_admin(svc, "reader", role="Read-only")
    client = signed_in(app, "reader")
    html = client.get("/admin/settings").get_data(as_text=True)
    assert 'name="password_policy.min_length"' in html and "Save" not in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    before = snapshot(svc)
    form = {**PW_FORM, "csrf_token": token.group(1) if token else console_csrf(client)}
    assert client.post("/admin/settings/password_policy", data=form).status_code == 403
    assert snapshot(svc) == before


def test_send_test_mail_lands_in_the_outbox_and_is_audited(app, root):
    svc = app.extensions["idp"]
    response = _post(root, "/admin/settings/test-mail", {"test_email": "ops@example.net"})
    assert response.status_code == 302
    assert "A test message was sent to ops@example.net" in root.get("/admin/settings").get_data(
        as_text=True
    )
    mails = [m for m in outbox(svc) if m["To"] == "ops@example.net"]
    assert len(mails) == 1 and "test message" in mails[0].get_body(("plain",)).get_content()
    (event,) = _events(svc, "config.test_mail_sent")
    assert event.target == "ops@example.net" and event.details["delivered"] is True


def test_send_test_mail_refuses_a_bad_address(app, root):
    svc = app.extensions["idp"]
    root.get("/admin/settings")
    before = snapshot(svc)
    response = _post(root, "/admin/settings/test-mail", {"test_email": "nobody"})
    assert response.status_code == 400
    assert 'id="test-email-error"' in response.get_data(as_text=True)
    assert snapshot(svc) == before and outbox(svc) == []


def test_send_test_sms_is_written_to_the_outbox(app, root):
    svc = app.extensions["idp"]
    assert (
        _post(root, "/admin/settings/test-sms", {"test_phone": "+49 151 2345678"}).status_code
        == 302
    )
    files = list((Path(svc.settings.instance_dir) / "outbox").glob("*.sms.json"))
    assert len(files) == 1
    sms = json.loads(files[0].read_text())
    assert sms["to"] == "+49 151 2345678" and "Test message" in sms["text"]


def test_delivery_settings_are_shown_read_only_with_the_password_masked(make_app):
    app = make_app(smtp_url="smtp://mailer:s3cret-pw@mail.example.org:587")
    make_admin(app.extensions["idp"])
    html = signed_in(app).get("/admin/settings").get_data(as_text=True)
    assert "smtp://mailer:***@mail.example.org:587" in html
    assert "s3cret-pw" not in html
    assert "needs a restart" in html


def test_a_stored_value_that_fails_validation_keeps_the_running_settings(app, root, caplog):
    """A row written around the checks (by hand in the database) does not take a worker down:
    it keeps the settings it has and logs why."""
    from idp.storage import applied_settings

    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        applied_settings.put(db, "session", "idle_minutes", 0, svc.clock.utcnow())
        applied_settings.bump_generation(db)
    assert root.get("/admin/settings").status_code == 200
    assert svc.settings.session.idle_minutes == 30
    assert "stored settings not applied" in caplog.text


def test_every_live_section_and_key_has_a_title_and_label():
    """A section made live (APPLIED_SECTIONS) shows on the screen with a human label per key,
    never a 500 or a raw setting name."""
    from idp.settings import applied_keys
    from idp.web.admin.settings import LABELS, SECTIONS

    missing = [
        f"{section}.{key}"
        for section, keys in applied_keys().items()
        for key in keys
        if f"{section}.{key}" not in LABELS
    ]
    assert set(applied_keys()) <= set(SECTIONS) and missing == []
