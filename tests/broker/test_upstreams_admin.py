"""Managing upstream identity providers: ``idp upstreams add | list | remove`` and
``/api/v1/upstreams``. The client secret is sealed at rest, never shown back, printed or
audited; bad settings are refused with one line (CLI) or problem+json (API) and change nothing;
changes are audited; permissions are checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_cli import fails, ok_json, snapshot

from idp.cli import main

_TESTS = Path(__file__).resolve().parent.parent
if str(_TESTS / "api") not in sys.path:
    sys.path.insert(0, str(_TESTS / "api"))

SECRET = "s3cret-value-never-shown-0123456789"
OIDC = ["upstreams", "add", "corp", "--display-name", "Corp", "--issuer",
        "https://login.corp.example/v2.0", "--client-id", "idp-here",
        "--client-secret-env", "UPSTREAM_SECRET", "--hrd-domain", "Corp.Example",
        "--create-users"]


@pytest.fixture
def initialised(monkeypatch, instance_dir, capsys):
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    monkeypatch.setenv("UPSTREAM_SECRET", SECRET)
    assert main(["init", "--admin-password", "pw-for-tests-0", "--json"]) == 0
    capsys.readouterr()
    return instance_dir


def _rows(instance: Path) -> dict[str, list]:
    snap = snapshot(instance)
    return {"upstream_providers": snap["upstream_providers"], "audit": snap["audit_events"]}


def test_cli_add_list_remove(initialised, capsys):
    added = ok_json(capsys, *OIDC)
    assert added["alias"] == "corp" and added["has_secret"] is True
    assert added["hrd_domains"] == ["corp.example"]
    assert added["config"]["scopes"] == "openid profile email"
    assert added["redirect_uri"].endswith("/broker/corp/callback")
    listed = ok_json(capsys, "upstreams", "list")["items"]
    assert [u["alias"] for u in listed] == ["corp"]
    rows = snapshot(initialised)
    assert SECRET not in json.dumps(rows)  # sealed at rest, not in the audit row either
    assert SECRET not in json.dumps(listed)
    assert ok_json(capsys, "upstreams", "remove", "corp") == {"removed": "corp"}
    assert ok_json(capsys, "upstreams", "list")["items"] == []


def test_cli_oauth2_with_secret_on_stdin(initialised, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(SECRET + "\n"))
    added = ok_json(capsys, "upstreams", "add", "gh", "--kind", "oauth2", "--display-name",
                    "GitHub", "--client-id", "abc", "--client-secret-stdin",
                    "--authorization-endpoint", "https://github.com/login/oauth/authorize",
                    "--token-endpoint", "https://github.com/login/oauth/access_token",
                    "--userinfo-endpoint", "https://api.github.com/user",
                    "--emails-endpoint", "https://api.github.com/user/emails")
    assert added["config"]["subject_claim"] == "id"
    assert added["config"]["emails_endpoint"] == "https://api.github.com/user/emails"


@pytest.mark.parametrize(("args", "needle"), [
    (["upstreams", "add", "Bad Alias", "--display-name", "x", "--issuer", "https://a.example",
      "--client-id", "c", "--client-secret-env", "UPSTREAM_SECRET"], "alias must be"),
    (["upstreams", "add", "corp", "--display-name", "x", "--issuer", "https://a.example",
      "--client-id", "c"], "client secret is required"),
    (["upstreams", "add", "corp", "--display-name", "x", "--issuer", "javascript:alert(1)",
      "--client-id", "c", "--client-secret-env", "UPSTREAM_SECRET"], "issuer must be"),
    (["upstreams", "add", "corp", "--display-name", "x", "--issuer", "https://a.example",
      "--client-id", "c", "--client-secret-env", "UPSTREAM_SECRET", "--hrd-domain",
      "not a domain"], "not a domain name"),
    (["upstreams", "add", "corp", "--display-name", "x", "--issuer", "https://a.example",
      "--client-id", "c", "--client-secret-env", "NOT_SET_ANYWHERE"], "is not set"),
    (["upstreams", "remove", "nobody"], "no upstream identity provider"),
])
def test_cli_refusals_are_one_line_and_change_nothing(initialised, capsys, args, needle):
    before = snapshot(initialised)
    err = fails(capsys, *args)
    assert needle in err
    assert snapshot(initialised) == before


def test_cli_bad_mapping_is_refused(initialised, capsys, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"claim": "groups", "group": "A", "role": "B"}]))
    before = snapshot(initialised)
    err = fails(capsys, *OIDC, "--mapping", str(rules))
    assert "exactly one of field, group, role" in err
    assert snapshot(initialised) == before


# --- the admin API ----------------------------------------------------------------------------


def _body(**extra):
    body = {"alias": "corp", "kind": "oidc", "display_name": "Corp",
            "config": {"issuer": "https://login.corp.example", "client_id": "idp-here"},
            "client_secret": SECRET,
            "mapping": [{"claim": "groups", "value": "admins", "group": "Admins"}]}
    body.update(extra)
    return body


def test_api_create_read_patch_delete(app):
    from api_kit import api, service_token

    token = service_token(app)
    client = app.test_client()
    made = api(client, "POST", "/api/v1/upstreams", token, json=_body())
    assert made.status_code == 201, made.get_json()
    assert made.headers["Location"].endswith("/upstreams/corp")
    assert made.get_json()["has_secret"] is True and "client_secret" not in made.get_json()
    assert SECRET not in made.get_data(as_text=True)
    got = api(client, "GET", "/api/v1/upstreams/corp", token)
    assert got.status_code == 200
    changed = api(client, "PATCH", "/api/v1/upstreams/corp", token,
                  json={"enabled": False, "hrd_domains": ["corp.example"]},
                  headers={"If-Match": got.headers["ETag"]})
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["enabled"] is False
    stale = api(client, "PATCH", "/api/v1/upstreams/corp", token, json={"enabled": True},
                headers={"If-Match": got.headers["ETag"]})
    assert stale.status_code == 412
    listed = api(client, "GET", "/api/v1/upstreams", token).get_json()
    assert listed["total"] == 1
    gone = api(client, "DELETE", "/api/v1/upstreams/corp", token)
    assert gone.status_code == 204
    assert api(client, "GET", "/api/v1/upstreams/corp", token).status_code == 404
    from broker_kit import audits

    svc = app.extensions["idp"]
    assert [a["_target"] for a in audits(svc, "upstream.created")] == ["corp"]
    assert audits(svc, "upstream.updated")[-1]["fields"] == ["enabled", "hrd_domains"]
    assert SECRET not in json.dumps(audits(svc, "upstream.created"))


@pytest.mark.parametrize(("body", "status", "needle"), [
    (_body(alias="Not An Alias"), 400, ""),
    (_body(kind="ldap"), 400, ""),
    (_body(config={"issuer": "ftp://x", "client_id": "c"}), 409, "issuer must be"),
    (_body(mapping=[{"claim": "x", "field": "password_hash"}]), 409, "field must be one of"),
    (_body(client_secret=None), 409, "client secret is required"),
    (_body(config={"issuer": "https://a.example", "client_id": "c", "client_secret": "x"}), 409,
     "unknown setting 'client_secret' (the secret is given apart"),
    (_body(config={"issuer": "https://a.example", "client_id": "c",
                   "authorize_params": {"redirect_uri": "https://evil.example"}}), 409,
     "must not set redirect_uri"),
])
def test_api_refusals_are_problem_json_and_change_nothing(app, body, status, needle):
    from api_kit import api, service_token

    token = service_token(app)
    svc = app.extensions["idp"]
    from broker_kit import audits

    before = len(audits(svc, "upstream.created"))
    resp = api(app.test_client(), "POST", "/api/v1/upstreams", token, json=body)
    assert resp.status_code == status, resp.get_json()
    assert resp.mimetype == "application/problem+json"
    assert needle in resp.get_json().get("detail", "")
    assert len(audits(svc, "upstream.created")) == before


def test_api_needs_the_permission(app):
    from api_kit import api, service_token

    helpdesk = service_token(app, roles=("Helpdesk",))
    resp = api(app.test_client(), "GET", "/api/v1/upstreams", helpdesk)
    assert resp.status_code == 403
    assert resp.mimetype == "application/problem+json"
    reader = service_token(app, roles=("Read-only",))
    assert api(app.test_client(), "GET", "/api/v1/upstreams", reader).status_code == 200
    resp = api(app.test_client(), "POST", "/api/v1/upstreams", reader, json=_body())
    assert resp.status_code == 403
    assert "broker:upstreams:create" in resp.get_json()["detail"]


def test_the_openapi_document_describes_the_upstreams(app):
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    assert "/api/v1/upstreams" in doc["paths"] and "/api/v1/upstreams/{alias}" in doc["paths"]
    assert "/api/v1/users/{user_id}/upstream-links" in doc["paths"]
