"""Network rules through the real app: the client address behind proxies, the global rules,
a role's and a group's, a client's at /oauth2/authorize and the token endpoint, an SP's, the
console's and the API's. Requests come from REMOTE_ADDR set in the test client's environ_base;
each refusal leaves no session, code or token behind and writes an ``ip.denied`` audit row."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest
from login_kit import GOOD, login, make_user
from sqlalchemy import func, select

from idp.manage import Actor, iprules, policies, transaction
from idp.manage import clients as manage_clients
from idp.manage import groups as manage_groups
from idp.manage import roles as manage_roles
from idp.storage.models import AuditEvent, User
from idp.storage.models_auth import SsoSessionIndex
from idp.storage.models_oauth import RefreshToken

RP = "https://rp.example.org/cb"
OFFICE = "198.51.100.0/24"
HOME = "203.0.113.9"


def client_from(app, address: str, **environ):
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = address
    c.environ_base.update(environ)
    return c


def denied_rows(svc) -> list[AuditEvent]:
    with svc.sessions() as db:
        rows = db.scalars(select(AuditEvent).where(AuditEvent.action == "ip.denied")).all()
        db.expunge_all()
        return list(rows)


def session_count(svc) -> int:
    with svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(SsoSessionIndex))


def op(svc):
    return transaction(svc, Actor.operator("test"))


# --- the client address --------------------------------------------------------------------------


def test_a_forged_forwarded_for_from_a_direct_peer_is_ignored(make_app):
    app = make_app(ip_rules={"deny": ["192.0.2.0/24"]})
    c = client_from(app, "192.0.2.10", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert c.get("/login").status_code == 403
    rows = denied_rows(app.extensions["idp"])
    assert [(r.ip, r.details["scope"]) for r in rows] == [("192.0.2.10", "global")]


def test_behind_one_proxy_the_right_most_entry_is_the_client(make_app):
    app = make_app(server={"trusted_proxies": 1}, ip_rules={"deny": ["192.0.2.0/24"]})
    svc = app.extensions["idp"]
    make_user(svc, "alice")
    # The client forged a left entry; the proxy appended the real 192.0.2.55: refused.
    c = client_from(app, "10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.7, 192.0.2.55")
    assert c.get("/login").status_code == 403
    assert denied_rows(svc)[-1].ip == "192.0.2.55"
    # The other way round: the forged entry names a denied address, the real one is fine.
    ok = client_from(app, "10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.55, 198.51.100.7")
    assert login(ok, "alice", GOOD).status_code in (302, 303)
    with svc.sessions() as db:
        assert db.scalar(select(SsoSessionIndex.ip)) == "198.51.100.7"
        success = db.scalar(select(AuditEvent).where(AuditEvent.action == "login.success"))
        assert success.ip == "198.51.100.7"


def test_behind_two_proxies_the_second_entry_from_the_right_is_the_client(make_app):
    app = make_app(server={"trusted_proxies": 2}, ip_rules={"allow": ["198.51.100.0/24"]})
    header = "192.0.2.1, 198.51.100.7, 10.0.0.3"
    assert (
        client_from(app, "10.0.0.2", HTTP_X_FORWARDED_FOR=header).get("/login").status_code == 200
    )
    short = client_from(app, "10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert short.get("/login").status_code == 403  # one entry for two proxies: the peer counts


def test_a_peer_outside_the_trusted_proxy_networks_has_its_headers_ignored(make_app):
    app = make_app(
        server={"trusted_proxies": 1, "trusted_proxy_networks": ["10.0.0.0/8"]},
        ip_rules={"allow": ["198.51.100.0/24"]},
    )
    good = client_from(app, "10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert good.get("/login").status_code == 200
    outside = client_from(app, "203.0.113.50", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert outside.get("/login").status_code == 403
    assert denied_rows(app.extensions["idp"])[-1].ip == "203.0.113.50"


@pytest.mark.parametrize("header", ["garbage", "198.51.100.7, not-an-ip", "", "::::"])
def test_garbage_forwarded_for_values_leave_the_peer_as_the_client(make_app, header):
    app = make_app(server={"trusted_proxies": 1}, ip_rules={"allow": ["10.0.0.0/8"]})
    c = client_from(
        app,
        "10.0.0.2",
        HTTP_X_FORWARDED_FOR=header,
        HTTP_X_FORWARDED_HOST="evil.example\r\nx",
        HTTP_X_FORWARDED_PROTO="gopher",
    )
    assert c.get("/login").status_code == 200  # judged as 10.0.0.2, allowed


def test_forwarded_proto_and_host_are_taken_only_from_a_trusted_proxy(make_app):
    app = make_app(server={"trusted_proxies": 1})
    seen = {}

    @app.get("/_echo_url")
    def _echo():
        from flask import request

        seen["url"] = request.host_url
        return ""

    fwd = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "idp.example.org"}
    client_from(app, "10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.7", **fwd).get("/_echo_url")
    assert seen["url"] == "https://idp.example.org/"
    direct = make_app(server={"trusted_proxies": 0})
    direct.add_url_rule("/_echo_url", view_func=_echo)
    client_from(direct, "10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.7", **fwd).get("/_echo_url")
    assert seen["url"] == "http://localhost/"


# --- global rules ----------------------------------------------------------------------------


def test_global_rules_refuse_everything_but_health_probes(make_app):
    app = make_app(ip_rules={"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.66.0.0/16"]})
    outside = client_from(app, "192.0.2.1")
    page = outside.get("/login")
    assert page.status_code == 403
    text = page.get_data(as_text=True)
    assert "Sign-in is not allowed from your network" in text
    reference = denied_rows(app.extensions["idp"])[-1].details["reference"]
    assert reference in text
    assert outside.get("/healthz").status_code == 200
    token = outside.post("/oauth2/token", data={"grant_type": "client_credentials"})
    assert token.status_code == 400 and token.get_json()["error"] == "unauthorized_client"
    api = outside.get("/api/v1/users")
    assert api.status_code == 403 and api.mimetype == "application/problem+json"
    assert client_from(app, "10.66.1.1").get("/login").status_code == 403  # deny wins
    assert client_from(app, "10.1.1.1").get("/login").status_code == 200
    assert client_from(app, "2001:db8::7").get("/login").status_code == 200
    assert client_from(app, "::ffff:10.1.1.1").get("/login").status_code == 200


def test_global_rules_apply_live_when_an_administrator_changes_them(app):
    svc = app.extensions["idp"]
    assert client_from(app, "192.0.2.1").get("/login").status_code == 200
    with op(svc) as ctx:
        iprules.set_global(ctx, [], ["192.0.2.0/24"])
    assert client_from(app, "192.0.2.1").get("/login").status_code == 403
    with svc.sessions() as db:
        actions = db.scalars(select(AuditEvent.action)).all()
    assert "config.policy_set" in actions


def test_invalid_global_rules_store_nothing(app):
    svc = app.extensions["idp"]
    with pytest.raises(iprules.InvalidRules, match="did you mean 10.0.0.0/8"), op(svc) as ctx:
        iprules.set_global(ctx, ["10.1.2.3/8"], [])
    with op(svc) as ctx:
        assert iprules.get_global(ctx).allow == []


def test_an_administrator_cannot_lock_out_their_own_address(app):
    svc = app.extensions["idp"]
    from_browser = Actor("operator", "test", ip="192.0.2.1")
    with pytest.raises(policies.SettingError, match="your own address 192.0.2.1") as refused:
        with transaction(svc, from_browser) as ctx:
            iprules.set_global(ctx, ["10.0.0.0/8"], [])
    assert refused.value.field == "ip_rules.allow"
    with op(svc) as ctx:
        assert "ip_rules" not in policies.stored(ctx)
    # Rules that keep the address in are stored.
    with transaction(svc, from_browser) as ctx:
        iprules.set_global(ctx, ["10.0.0.0/8", "192.0.2.0/24"], [])
    with op(svc) as ctx:
        assert policies.stored(ctx)["ip_rules"]["allow"] == ["10.0.0.0/8", "192.0.2.0/24"]


# --- role and group rules ----------------------------------------------------------------------


def _user_with_role(svc, username: str, allow: list[str], deny: list[str] = ()) -> None:
    uid = make_user(svc, username)
    with op(svc) as ctx:
        role = manage_roles.create(ctx, f"{username}-role", [])
        ctx.directory.assign_role(ctx.db.get(User, uid), role)
        iprules.set_rules(ctx, "role", role.id, allow, deny)


def test_a_role_rule_refuses_the_password_step_outside_its_networks(app):
    svc = app.extensions["idp"]
    _user_with_role(svc, "alice", [OFFICE])
    before = session_count(svc)
    resp = login(client_from(app, HOME), "alice", GOOD)
    assert resp.status_code == 403
    assert "Sign-in is not allowed from your network" in resp.get_data(as_text=True)
    assert session_count(svc) == before
    row = denied_rows(svc)[-1]
    assert (row.details["scope"], row.target, row.ip) == ("role", "alice-role", HOME)
    assert login(client_from(app, "198.51.100.20"), "alice", GOOD).status_code in (302, 303)
    assert session_count(svc) == before + 1


def test_a_group_rule_covers_members_of_its_subgroups(app):
    svc = app.extensions["idp"]
    uid = make_user(svc, "bob")
    with op(svc) as ctx:
        top = manage_groups.create(ctx, "contractors")
        sub = manage_groups.create(ctx, "emea", parent="contractors")
        ctx.directory.add_member(sub, ctx.db.get(User, uid))
        iprules.set_rules(ctx, "group", top.id, [], ["203.0.113.0/24"])
    assert login(client_from(app, HOME), "bob", GOOD).status_code == 403
    assert denied_rows(svc)[-1].details["scope"] == "group"
    assert login(client_from(app, "198.51.100.20"), "bob", GOOD).status_code in (302, 303)


def test_a_role_rule_is_checked_again_when_an_sso_session_is_reused(app):
    svc = app.extensions["idp"]
    _user_with_role(svc, "carol", [OFFICE])
    _make_client(svc, "web")
    c = client_from(app, "198.51.100.20")
    assert login(c, "carol", GOOD).status_code in (302, 303)
    c.environ_base["REMOTE_ADDR"] = HOME  # the same session cookie, from elsewhere now
    resp = c.get("/oauth2/authorize", query_string=_auth_params("web"))
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert resp.headers["Location"].startswith(RP)
    assert query["error"] == ["access_denied"] and "code" not in query
    assert denied_rows(svc)[-1].details["scope"] == "role"


def test_whether_any_role_has_rules_is_cached_per_worker_and_a_change_reaches_every_worker(
    make_app, monkeypatch
):
    """Sign-in looks at the user's roles and groups only when some role or group has rules;
    whether any has is cached per worker like the client rules: the first rule applies at once
    on the worker that set it, on another within reload_poll_seconds."""
    import idp.sso.network as network_module

    now = [500.0]
    monkeypatch.setattr(network_module.time, "monotonic", lambda: now[0])
    polled = {"server": {"reload_poll_seconds": 5}}
    app, other = make_app(**polled), make_app(**polled)  # two workers on one database
    svc = app.extensions["idp"]
    uid = make_user(svc, "dave")
    assert login(client_from(other, HOME), "dave", GOOD).status_code in (302, 303)  # "none"
    with op(svc) as ctx:
        role = manage_roles.create(ctx, "dave-role", [])
        ctx.directory.assign_role(ctx.db.get(User, uid), role)
        iprules.set_rules(ctx, "role", role.id, [OFFICE], [])
    assert login(client_from(app, HOME), "dave", GOOD).status_code == 403  # at once
    now[0] += 4.9
    assert login(client_from(other, HOME), "dave", GOOD).status_code in (302, 303)
    now[0] += 0.2
    before = session_count(svc)
    assert login(client_from(other, HOME), "dave", GOOD).status_code == 403
    assert session_count(svc) == before
    with op(svc) as ctx:
        iprules.set_rules(ctx, "role", role.id, [], [])
    assert login(client_from(app, HOME), "dave", GOOD).status_code in (302, 303)


# --- client rules ----------------------------------------------------------------------------


def _make_client(svc, client_id: str, **kw) -> str | None:
    with op(svc) as ctx:
        _, secret = manage_clients.create(
            ctx,
            client_id,
            name=client_id,
            redirect_uris=[RP],
            grant_types=kw.pop("grant_types", ["authorization_code"]),
            scope="openid profile",
            first_party=True,
            **kw,
        )
    return secret


def _auth_params(client_id: str, redirect_uri: str = RP) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid",
        "state": "s1",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }


def test_a_client_rule_sends_access_denied_to_the_verified_redirect_uri(app):
    svc = app.extensions["idp"]
    _make_client(svc, "web")
    with op(svc) as ctx:
        iprules.set_rules(ctx, "client", "web", [OFFICE], [])
    c = client_from(app, HOME)
    resp = c.get("/oauth2/authorize", query_string=_auth_params("web"))
    assert resp.status_code in (302, 303)
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert resp.headers["Location"].startswith(RP)
    assert query["error"] == ["access_denied"] and query["state"] == ["s1"]
    row = denied_rows(svc)[-1]
    assert (row.details["scope"], row.target) == ("client", "web")
    # An unregistered redirect_uri is never redirected to, refused or not.
    bad = c.get("/oauth2/authorize", query_string=_auth_params("web", "https://evil.example/"))
    assert bad.status_code == 400 and "Location" not in bad.headers
    # From the office the login is offered.
    ok = client_from(app, "198.51.100.20").get(
        "/oauth2/authorize", query_string=_auth_params("web")
    )
    assert ok.headers["Location"].startswith("/login")


def test_a_client_rule_refuses_the_token_endpoint_and_issues_nothing(app):
    svc = app.extensions["idp"]
    secret = _make_client(svc, "svc", grant_types=["client_credentials"])
    with op(svc) as ctx:
        iprules.set_rules(ctx, "client", "svc", [], [HOME])
    basic = "Basic " + base64.b64encode(f"svc:{secret}".encode()).decode()
    data = {"grant_type": "client_credentials"}
    resp = client_from(app, HOME).post("/oauth2/token", data=data, headers={"Authorization": basic})
    assert resp.status_code == 400
    assert (
        resp.get_json()["error"] == "unauthorized_client" and "access_token" not in resp.get_json()
    )
    assert denied_rows(svc)[-1].details["scope"] == "client"
    form = client_from(app, HOME).post(
        "/oauth2/token", data={**data, "client_id": "svc", "client_secret": secret}
    )
    assert form.status_code == 400
    ok = client_from(app, "198.51.100.20").post(
        "/oauth2/token", data=data, headers={"Authorization": basic}
    )
    assert ok.status_code == 200 and ok.get_json()["access_token"]
    with svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(RefreshToken)) == 0


def test_client_rules_are_cached_per_worker_and_a_change_reaches_every_worker(
    make_app, monkeypatch
):
    """The token endpoint reads a client's rules from the worker's cache; a change bumps the
    shared generation: the worker that made it applies it at once, another one within
    reload_poll_seconds (not before: no database read per request)."""
    import idp.sso.network as network_module

    now = [500.0]
    monkeypatch.setattr(network_module.time, "monotonic", lambda: now[0])
    polled = {"server": {"reload_poll_seconds": 5}}
    app, other = make_app(**polled), make_app(**polled)  # two workers on one database
    svc = app.extensions["idp"]
    secret = _make_client(svc, "svc", grant_types=["client_credentials"])
    basic = {"Authorization": "Basic " + base64.b64encode(f"svc:{secret}".encode()).decode()}
    data = {"grant_type": "client_credentials"}

    def status(a) -> int:
        return client_from(a, HOME).post("/oauth2/token", data=data, headers=basic).status_code

    assert status(app) == 200 and status(other) == 200  # both cached "no rules"
    with op(svc) as ctx:
        iprules.set_rules(ctx, "client", "svc", [], [HOME])
    assert status(app) == 400  # the worker that changed them: at once
    now[0] += 4.9
    assert status(other) == 200  # inside its window the other still has its copy
    now[0] += 0.2
    assert status(other) == 400
    with op(svc) as ctx:
        manage_clients.delete(ctx, "svc")
    secret = _make_client(svc, "svc", grant_types=["client_credentials"])
    basic["Authorization"] = "Basic " + base64.b64encode(f"svc:{secret}".encode()).decode()
    assert status(app) == 200  # a new client of the same id does not inherit the old rules


def test_refusals_are_audited_once_per_minute_per_address(app):
    svc = app.extensions["idp"]
    _make_client(svc, "web")
    with op(svc) as ctx:
        iprules.set_rules(ctx, "client", "web", [OFFICE], [])
    c = client_from(app, HOME)
    for _ in range(5):
        c.get("/oauth2/authorize", query_string=_auth_params("web"))
    assert len(denied_rows(svc)) == 1


def test_invalid_client_rules_are_refused_and_nothing_is_stored(app):
    svc = app.extensions["idp"]
    _make_client(svc, "web")
    with pytest.raises(iprules.InvalidRules, match="deny: 'nope'"), op(svc) as ctx:
        iprules.set_rules(ctx, "client", "web", [OFFICE], ["nope"])
    with op(svc) as ctx:
        assert iprules.get(ctx, "client", "web").allow == []


# --- console and API ---------------------------------------------------------------------------


def test_the_console_and_the_api_use_the_same_engine(make_app):
    app = make_app(
        admin={"allowed_networks": ["10.0.0.0/8"]}, api={"allowed_networks": ["10.0.0.0/8"]}
    )
    svc = app.extensions["idp"]
    page = client_from(app, HOME).get("/admin/")
    assert page.status_code == 403 and "Sign-in is not allowed" in page.get_data(as_text=True)
    assert client_from(app, HOME).get("/scim/v2/Users").status_code == 403
    api = client_from(app, "::ffff:" + HOME).get("/api/v1/users")
    assert api.status_code == 403 and api.get_json()["reference"]
    assert {r.details["scope"] for r in denied_rows(svc)} == {"admin", "api"}
    assert client_from(app, "10.1.1.1").get("/api/v1/users").status_code == 401  # no token


# --- SP rules --------------------------------------------------------------------------------


def _sp(svc, entity_id: str) -> None:
    from idp.saml.registry import SpRegistry

    metadata = (
        f'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'entityID="{entity_id}"><md:SPSSODescriptor protocolSupportEnumeration='
        '"urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService Binding='
        '"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
        f'Location="{entity_id}/acs" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>'
    )
    with svc.sessions.begin() as db:
        SpRegistry(db).add(metadata, origin="manual")


def test_an_sp_rule_refuses_saml_sso_with_an_error_page_and_no_assertion(app):
    svc = app.extensions["idp"]
    make_user(svc, "dave")
    _sp(svc, "https://wiki.example.org/sp")
    with op(svc) as ctx:
        iprules.set_rules(ctx, "sp", "https://wiki.example.org/sp", [OFFICE], [])
    c = client_from(app, HOME)
    assert login(c, "dave", GOOD).status_code in (302, 303)
    resp = c.get("/saml/init", query_string={"sp": "https://wiki.example.org/sp"})
    text = resp.get_data(as_text=True)
    assert resp.status_code == 403 and "SAMLResponse" not in text
    assert "Sign-in is not allowed from your network" in text
    row = denied_rows(svc)[-1]
    assert (row.details["scope"], row.target) == ("sp", "https://wiki.example.org/sp")
    c.environ_base["REMOTE_ADDR"] = "198.51.100.20"
    ok = c.get("/saml/init", query_string={"sp": "https://wiki.example.org/sp"})
    assert ok.status_code == 200 and "SAMLResponse" in ok.get_data(as_text=True)


def test_the_saml_refusal_page_is_in_the_readers_language(app):
    svc = app.extensions["idp"]
    make_user(svc, "erin")
    _sp(svc, "https://wiki.example.org/sp")
    with op(svc) as ctx:
        iprules.set_rules(ctx, "sp", "https://wiki.example.org/sp", [OFFICE], [])
    c = client_from(app, HOME, HTTP_ACCEPT_LANGUAGE="de")
    assert login(c, "erin", GOOD).status_code in (302, 303)
    resp = c.get("/saml/init", query_string={"sp": "https://wiki.example.org/sp"})
    text = resp.get_data(as_text=True)
    assert resp.status_code == 403 and "SAMLResponse" not in text
    assert "Die Anmeldung ist aus Ihrem Netzwerk nicht erlaubt" in text
    assert "Sign-in is not allowed" not in text
    assert denied_rows(svc)[-1].details["reference"] in text
