"""The console's "Network access" page of a role, a group, an OIDC client and a SAML SP:
linked from each scope's screen, the lists saved through idp.manage.iprules (canonical,
audited, confirmed), bad entries shown beside their list with the line and nothing stored,
CSRF, read-only and missing permissions; and the settings screen refusing global rules
that would lock the administrator's own address out."""

from __future__ import annotations

import html as html_lib

import pytest
from admin_kit import console_csrf, make_admin, signed_in
from directory_api_kit import snapshot
from ip_rules_kit import make_scopes, provider_id, rules
from sqlalchemy import select

from idp.manage import Actor, iprules, transaction
from idp.storage.models import AuditEvent

KINDS = ("role", "group", "client", "sp")


@pytest.fixture
def scopes(svc):
    return make_scopes(svc)


@pytest.fixture
def root(app):
    make_admin(app.extensions["idp"])
    return signed_in(app)


def _screens(scopes, kind: str) -> tuple[str, str]:
    """(the scope's own screen, its network page)."""
    own = {
        "role": f"/admin/roles/{scopes.role}",
        "group": f"/admin/groups/{scopes.group}",
        "client": f"/admin/clients/{scopes.client}",
        "sp": f"/admin/saml/sp/{provider_id(scopes.sp)}",
    }[kind]
    return own, own + "/network"


def _save(client, path: str, allow: str, deny: str, csrf: bool = True):
    form = {"allow": allow, "deny": deny}
    if csrf:
        form["csrf_token"] = console_csrf(client, path)
    return client.post(path, data=form)


def _text(response) -> str:
    return html_lib.unescape(response.get_data(as_text=True))


@pytest.mark.parametrize("kind", KINDS)
def test_each_scope_links_its_page_and_saves_the_lists_audited(app, svc, root, scopes, kind):
    own, page = _screens(scopes, kind)
    assert f'href="{page}"' in root.get(own).get_data(as_text=True)
    shown = root.get(page)
    assert shown.status_code == 200
    assert 'name="allow"' in _text(shown) and 'name="deny"' in _text(shown)
    assert "Your address is 127.0.0.1" in _text(shown)
    saved = _save(root, page, "10.0.0.0/8\r\n\r\n  2001:DB8::/32 \r\n10.0.0.0/8", "10.66.0.5")
    assert saved.status_code == 302 and saved.headers["Location"].endswith(page)
    after = _text(root.get(page))
    assert "Network access saved: 2 allowed and 1 refused networks" in after
    assert "10.0.0.0/8\n2001:db8::/32</textarea>" in after
    assert rules(svc, kind, scopes.key(kind)) == {
        "allow": ["10.0.0.0/8", "2001:db8::/32"],
        "deny": ["10.66.0.5/32"],
    }
    with svc.sessions() as db:
        row = db.scalars(select(AuditEvent).where(AuditEvent.action == "ip_rules.set")).one()
    assert row.target == f"{kind}:{scopes.key(kind)}" and row.actor != "test"
    assert row.ip == "127.0.0.1"
    again = _save(root, page, "10.0.0.0/8\n2001:db8::/32", "10.66.0.5/32")
    assert again.status_code == 302 and "Nothing changed." in _text(root.get(page))
    cleared = _save(root, page, "", "")
    assert cleared.status_code == 302
    assert rules(svc, kind, scopes.key(kind)) == {"allow": [], "deny": []}


@pytest.mark.parametrize(
    ("allow", "deny", "field", "message"),
    [
        ("10.0.0.0/8\n\nnope", "", "allow", "Line 3: nope is not an IP address or CIDR network."),
        ("", "192.0.2.0/24\n10.1.2.3/8", "deny", "Line 2: 10.1.2.3/8 has bits set after"),
        ("", "192.0.2.0/24\n10.1.2.3/8", "deny", "did you mean 10.0.0.0/8?"),
        ("<script>x</script>", "", "allow", "Line 1: <script>x</script> is not"),
        ("\n".join(f"10.0.{i // 256}.{i % 256}" for i in range(201)), "", "allow", "At most 200"),
    ],
)
def test_a_bad_entry_is_shown_beside_its_list_and_nothing_is_stored(
    app, svc, root, scopes, allow, deny, field, message
):
    for kind in KINDS:
        _own, page = _screens(scopes, kind)
        before = snapshot(svc)
        resp = _save(root, page, allow, deny)
        assert resp.status_code == 400
        body = resp.get_data(as_text=True)
        assert "<script>x</script>" not in body  # the entry is shown escaped
        assert message in _text(resp)
        assert f'id="{field}-error"' in body and 'aria-invalid="true"' in body
        assert "Nothing was saved" in body
        assert f">{html_lib.escape(allow, quote=False)}</textarea>" in body  # kept to correct
        assert snapshot(svc) == before


def test_a_post_without_the_csrf_token_changes_nothing(app, svc, root, scopes):
    for kind in KINDS:
        _own, page = _screens(scopes, kind)
        before = snapshot(svc)
        assert _save(root, page, "10.0.0.0/8", "", csrf=False).status_code == 400
        assert snapshot(svc) == before


def test_a_read_only_administrator_sees_the_lists_but_cannot_save(app, svc, scopes):
    with transaction(svc, Actor.operator("test")) as ctx:
        iprules.set_rules(ctx, "role", scopes.role, ["198.51.100.0/24"], [])
    make_admin(svc, "reader", role="Read-only")
    reader = signed_in(app, "reader")
    for kind in KINDS:
        shown = reader.get(_screens(scopes, kind)[1])
        assert shown.status_code == 200 and "<textarea" not in shown.get_data(as_text=True)
        if kind == "role":
            assert "<code>198.51.100.0/24</code>" in shown.get_data(as_text=True)
        csrf = console_csrf(reader, "/account/")  # no console form for a reader
        before = snapshot(svc)
        resp = reader.post(
            _screens(scopes, kind)[1], data={"allow": "10.0.0.0/8", "deny": "", "csrf_token": csrf}
        )
        assert resp.status_code == 403
        assert snapshot(svc) == before


def test_without_the_read_permission_the_page_is_403_and_unknown_scopes_404(app, svc, root, scopes):
    make_admin(svc, "desk", role="Helpdesk")
    desk = signed_in(app, "desk")
    for kind in KINDS:
        assert desk.get(_screens(scopes, kind)[1]).status_code == 403
    for path in [
        "/admin/roles/999999/network",
        "/admin/groups/999999/network",
        "/admin/clients/nope/network",
        f"/admin/saml/sp/{provider_id('https://other.example/sp')}/network",
        "/admin/saml/sp/%25%25/network",
    ]:
        assert root.get(path).status_code == 404, path


# --- the settings screen's global rules ----------------------------------------------------


def test_the_settings_screen_refuses_global_rules_that_lock_out_the_admins_address(app, root):
    svc = app.extensions["idp"]
    before = snapshot(svc)
    for allow, deny in [("10.0.0.0/8", ""), ("", "127.0.0.0/8"), ("127.0.0.1", "127.0.0.1")]:
        form = {
            "ip_rules.allow": allow,
            "ip_rules.deny": deny,
            "csrf_token": console_csrf(root, "/admin/settings"),
        }
        resp = root.post("/admin/settings/ip_rules", data=form)
        assert resp.status_code == 400
        assert "these rules would refuse your own address 127.0.0.1" in _text(resp)
        assert snapshot(svc) == before
    assert root.get("/admin/").status_code == 200
    form = {
        "ip_rules.allow": "127.0.0.0/8\n198.51.100.0/24",
        "ip_rules.deny": "",
        "csrf_token": console_csrf(root, "/admin/settings"),
    }
    assert root.post("/admin/settings/ip_rules", data=form).status_code == 302
    assert root.get("/admin/").status_code == 200  # the next request applies the rules
    assert list(svc.settings.ip_rules.allow) == ["127.0.0.0/8", "198.51.100.0/24"]
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert elsewhere.get("/login").status_code == 403
