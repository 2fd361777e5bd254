"""The console's upstream identity providers screen: add, change (the secret kept when the
field is empty, never shown), refuse bad settings with nothing stored, remove; read-only
administrators see no forms."""

from __future__ import annotations

import json
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from admin_kit import console_csrf, make_admin, signed_in  # noqa: E402
from broker_kit import audits  # noqa: E402

SECRET = "console-secret-never-shown-987654321"
CONFIG = json.dumps({"issuer": "https://login.corp.example", "client_id": "idp"})


def _add(client, token, **extra):
    form = {"csrf_token": token, "alias": "corp", "kind": "oidc", "display_name": "Corp",
            "client_secret": SECRET, "config": CONFIG, "mapping": "[]",
            "hrd_domains": "corp.example, sub.corp.example", "sync_mode": "import",
            "enabled": "1", "link_by_email": "1"}
    form.update(extra)
    return client.post("/admin/upstreams", data=form)


def test_add_change_and_remove_an_upstream(app, svc):
    make_admin(svc)
    client = signed_in(app)
    token = console_csrf(client, "/admin/upstreams")
    made = _add(client, token)
    assert made.status_code == 303
    page = client.get(made.headers["Location"]).get_data(as_text=True)
    assert "/broker/corp/callback" in page and SECRET not in page
    form = {"csrf_token": token, "display_name": "Corp SSO", "config": CONFIG, "mapping": "[]",
            "hrd_domains": "corp.example", "sync_mode": "force", "enabled": "1",
            "client_secret": ""}
    saved = client.post("/admin/upstreams/corp", data=form)
    assert saved.status_code == 303
    from idp.manage import Actor, transaction, upstreams

    with transaction(svc, Actor.operator("test")) as ctx:
        view = upstreams.get(ctx, "corp")
    assert view["display_name"] == "Corp SSO" and view["sync_mode"] == "force"
    assert view["has_secret"] and view["link_by_email"] is False
    assert audits(svc, "upstream.updated")[-1]["secret_changed"] is False
    gone = client.post("/admin/upstreams/corp/delete", data={"csrf_token": token})
    assert gone.status_code == 303
    assert client.get("/admin/upstreams/corp").status_code == 404


def test_bad_settings_are_refused_and_nothing_stored(app, svc):
    make_admin(svc)
    client = signed_in(app)
    token = console_csrf(client, "/admin/upstreams")
    for extra, needle in (({"config": "{not json"}, "not valid JSON"),
                          ({"mapping": '[{"claim": "x"}]'}, "exactly one of"),
                          ({"alias": "Bad Alias"}, "alias must be"),
                          ({"hrd_domains": "not_a_domain"}, "not a domain name")):
        resp = _add(client, token, **extra)
        assert resp.status_code == 400, extra
        assert needle in resp.get_data(as_text=True)
    assert audits(svc, "upstream.created") == []


def test_read_only_administrators_see_no_forms(app, svc):
    make_admin(svc, "reader", role="Read-only")
    client = signed_in(app, "reader")
    page = client.get("/admin/upstreams")
    assert page.status_code == 200
    assert 'action="/admin/upstreams"' not in page.get_data(as_text=True)
    refused = _add(client, console_csrf(client, "/logout"))
    assert refused.status_code == 403
    assert audits(svc, "upstream.created") == []
