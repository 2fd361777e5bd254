"""MFA policies decide the second factor: per user, group, role, OIDC client, SAML SP, everyone
with a grace period; allowed methods; remembered devices; step-up by acr_values with amr/acr
checked in the ID token (verified by PyJWT against /jwks)."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from login_kit import csrf, make_user
from mfa_kit import (
    add_channel,
    code_at,
    enrol_totp,
    mfa_counts,
    password_then_step,
    signed_in,
    step_page,
    submit_code,
)
from sqlalchemy import select

from idp.core.policy import MfaPolicy, MfaRule, MfaSubject, mfa_requirement
from idp.storage.directory import Directory
from idp.storage.models import User

RP = "https://rp.example.org/cb"


def _app(make_app, clock, **mfa):
    app = make_app(clock=clock, mfa=mfa) if mfa else make_app(clock=clock)
    return app, app.extensions["idp"]


def _client_app(svc, client_id="payroll"):
    from idp.storage.clients import ClientRegistry

    with svc.sessions.begin() as db:
        _, secret = ClientRegistry(db, svc.hasher, svc.sealer).create(
            client_id,
            name="Payroll",
            redirect_uris=[RP],
            grant_types=["authorization_code"],
            scope="openid profile",
            first_party=True,
        )
    return secret


def _authorize(client, client_id, **extra):
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": RP,
        "scope": "openid",
        "state": "s1",
        "nonce": "n1",
        **extra,
    }
    return client.get("/oauth2/authorize", query_string=params)


def _follow_to_rp(client, resp):
    for _ in range(6):
        loc = resp.headers.get("Location", "")
        if (
            resp.status_code in (302, 303)
            and loc.startswith("/")
            and not loc.startswith("/login/step")
        ):
            resp = client.get(loc)
            continue
        break
    return resp


def _id_token(app, client_id, secret, location):
    code = parse_qs(urlsplit(location).query)["code"][0]
    c = app.test_client()
    tok = c.post(
        "/oauth2/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": RP},
        auth=(client_id, secret),
    )
    assert tok.status_code == 200, tok.get_data(as_text=True)
    conf = c.get("/.well-known/openid-configuration").get_json()
    jwks = c.get(urlsplit(conf["jwks_uri"]).path).get_json()
    raw = tok.get_json()["id_token"]
    kid = jwt.get_unverified_header(raw)["kid"]
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
    return jwt.decode(
        raw,
        key.key,
        algorithms=[key.algorithm_name],
        audience=client_id,
        options={"verify_iat": False, "verify_exp": False, "verify_nbf": False},
    )


# --- the policy itself -----------------------------------------------------------------------


def test_rules_parse_and_bad_ones_are_refused():
    rule = MfaRule.parse("group:staff/admins methods=totp,webauthn grace_days=3")
    assert (rule.kind, rule.target, rule.methods, rule.grace_days) == (
        "group",
        "staff/admins",
        ("totp", "webauthn"),
        3,
    )
    for bad in ("", "team:x", "everyone:x", "group:", "role:a color=red", "sp:x grace_days=-1"):
        with pytest.raises(ValueError):
            MfaRule.parse(bad)


def test_matching_rules_narrow_methods_and_take_the_shortest_grace(clock):
    pol = MfaPolicy(
        grace_days=10,
        rules=(
            MfaRule.parse("group:admins methods=totp,webauthn"),
            MfaRule.parse("role:auditor methods=webauthn,sms grace_days=2"),
            MfaRule.parse("client:payroll"),
            MfaRule.parse("sp:https://sp.example/md"),
        ),
    )
    now = clock.utcnow()
    made = now - timedelta(days=1)
    none = mfa_requirement(pol, MfaSubject("ann", created_at=made), now)
    assert not none.required
    sub = MfaSubject("ann", groups=("/staff/admins",), roles=("auditor",), created_at=made)
    need = mfa_requirement(pol, sub, now)
    assert need.required and need.methods == ("webauthn",) and need.grace
    assert not mfa_requirement(pol, sub, now + timedelta(days=2)).grace
    assert mfa_requirement(pol, MfaSubject("x", protocol="oidc", client_id="payroll"), now).required
    assert not mfa_requirement(
        pol, MfaSubject("x", protocol="saml", client_id="payroll"), now
    ).required
    assert mfa_requirement(
        pol, MfaSubject("x", protocol="saml", client_id="https://sp.example/md"), now
    ).required


# --- over HTTP ---------------------------------------------------------------------------------


def test_user_flag_requires_the_second_factor(make_app, clock):
    app, svc = _app(make_app, clock)
    uid = make_user(svc, "ann", require_mfa=True)
    t = enrol_totp(svc, uid)
    client = app.test_client()
    password_then_step(client, "ann")
    assert not signed_in(client)
    assert submit_code(client, code_at(t, clock)).status_code == 302


def test_group_policy_with_allowed_methods(make_app, clock):
    app, svc = _app(make_app, clock, policies=["group:admins methods=totp"])
    uid = make_user(svc, "ann")
    make_user(svc, "bob")
    with svc.sessions.begin() as db:
        Directory(db).create_group("admins")
    _join(svc, "admins", uid)
    add_channel(svc, uid, "email", "ann@example.org")
    # ann's only factor is e-mail, which the admins' rule does not allow: she cannot pass.
    client = app.test_client()
    password_then_step(client, "ann")
    assert "none is set up" in step_page(client)
    t = enrol_totp(svc, uid)
    page = step_page(client)
    assert 'value="totp"' in page and "Code by e-mail" not in page
    assert submit_code(client, code_at(t, clock), factor="email").status_code == 302
    assert signed_in(client)  # the e-mail factor was not taken: the allowed one decided
    # bob is in no group: the password is enough.
    other = app.test_client()
    assert password_then_step(other, "bob").headers["Location"] == "/account/"


def _join(svc, group, uid):
    from idp.storage.models import Group, GroupMember

    with svc.sessions.begin() as db:
        gid = db.scalar(select(Group.id).where(Group.name == group))
        if not db.get(GroupMember, (gid, uid)):
            db.add(GroupMember(group_id=gid, user_id=uid))


def test_role_policy(make_app, clock):
    app, svc = _app(make_app, clock, policies=["role:auditor"], enroll_at_login=False)
    uid = make_user(svc, "ann")
    with svc.sessions.begin() as db:
        d = Directory(db)
        d.create_role("auditor", [])
    from idp.storage.models import Role, UserRole

    with svc.sessions.begin() as db:
        rid = db.scalar(select(Role.id).where(Role.name == "auditor"))
        db.add(UserRole(user_id=uid, role_id=rid))
    t = enrol_totp(svc, uid)
    client = app.test_client()
    password_then_step(client, "ann")
    assert submit_code(client, code_at(t, clock)).status_code == 302
    # Without a factor, past the grace period and without login enrolment: refused, no session.
    make_user(svc, "carl")
    with svc.sessions.begin() as db:
        cid = db.scalar(select(User.id).where(User.username == "carl"))
        db.add(UserRole(user_id=cid, role_id=rid))
    client = app.test_client()
    password_then_step(client, "carl")
    before = mfa_counts(svc)
    assert "none is set up" in step_page(client)
    token = csrf(client.get("/login").get_data(as_text=True))
    resp = client.post("/login/step", data={"csrf_token": token, "code": "1"})
    assert resp.status_code == 401 and mfa_counts(svc) == before


def test_grace_period_then_enrolment_at_login(make_app, clock):
    app, svc = _app(
        make_app, clock, required=True, grace_days=7, enroll_at_login=True, backup_codes=4
    )
    uid = make_user(svc, "ann")
    with svc.sessions.begin() as db:
        db.get(User, uid).created_at = clock.utcnow()
    client = app.test_client()
    assert password_then_step(client, "ann").headers["Location"] == "/account/"  # in grace
    clock.advance(8 * 86400)
    client = app.test_client()
    assert password_then_step(client, "ann").headers["Location"] == "/login/step"
    import re

    import pyotp

    page = step_page(client)
    assert "<svg" in page
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    resp = client.post("/login/step", data={"csrf_token": csrf(page), "code": "000000"})
    assert resp.status_code == 400 and mfa_counts(svc)["totp"] == 0 and not signed_in(client)
    resp = client.post(
        "/login/step", data={"csrf_token": csrf(page), "code": pyotp.TOTP(secret).at(clock.now())}
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[-1500:]
    assert resp.headers["Location"] == "/login/step" and not signed_in(client)
    page = step_page(client)
    codes = re.findall(r"<code>([A-Z2-9]{4}-[A-Z2-9]{4})</code>", page)
    assert len(codes) == 4
    resp = client.post("/login/step", data={"csrf_token": csrf(page)})
    assert resp.status_code == 302 and signed_in(client)
    assert mfa_counts(svc)["totp"] == 1 and mfa_counts(svc)["backup_unused"] == 4


def test_remember_this_device(make_app, clock):
    app, svc = _app(make_app, clock, remember_days=30)
    uid = make_user(svc, "ann")
    t = enrol_totp(svc, uid)
    client = app.test_client()
    password_then_step(client, "ann")
    assert submit_code(client, code_at(t, clock), remember=True).status_code == 302
    assert mfa_counts(svc)["devices"] == 1
    client.post("/logout", data={"csrf_token": csrf(client.get("/logout").get_data(as_text=True))})
    assert not signed_in(client)
    # Same browser: the password is enough, and the session says so (no otp in amr).
    assert password_then_step(client, "ann").headers["Location"] == "/account/"
    # Another browser, or the same one after the days passed: the factor again.
    other = app.test_client()
    assert password_then_step(other, "ann").headers["Location"] == "/login/step"
    clock.advance(31 * 86400)
    fresh = app.test_client()
    fresh.set_cookie(
        "idp_mfa_device", client.get_cookie("idp_mfa_device", path="/login").value, path="/login"
    )
    assert password_then_step(fresh, "ann").headers["Location"] == "/login/step"


def test_client_policy_and_acr_step_up_in_the_id_token(make_app, clock):
    app, svc = _app(make_app, clock, policies=["client:payroll"])
    secret = _client_app(svc, "payroll")
    other_secret = _client_app(svc, "wiki")
    uid = make_user(svc, "ann")
    t = enrol_totp(svc, uid)
    # wiki has no policy, ann asks for nothing: but an enrolled factor is always used.
    make_user(svc, "bob")
    client = app.test_client()
    resp = _authorize(client, "wiki")
    assert resp.headers["Location"].startswith("/login?r=")
    rid = parse_qs(urlsplit(resp.headers["Location"]).query)["r"][0]
    resp = password_then_step(client, "bob", r=rid)
    resp = _follow_to_rp(client, resp)
    claims = _id_token(app, "wiki", other_secret, resp.headers["Location"])
    assert claims["amr"] == ["pwd"] and claims["acr"] == "urn:idp:acr:1fa"
    # Step-up: bob's session cannot answer acr mfa, and bob has no factor to offer.
    resp = _authorize(client, "wiki", acr_values="urn:idp:acr:mfa")
    assert resp.headers["Location"].startswith("/login?r=")
    # ann at payroll: the client's policy demands the second factor.
    client = app.test_client()
    resp = _authorize(client, "payroll")
    rid = parse_qs(urlsplit(resp.headers["Location"]).query)["r"][0]
    assert password_then_step(client, "ann", r=rid).headers["Location"] == "/login/step"
    resp = _follow_to_rp(client, submit_code(client, code_at(t, clock)))
    claims = _id_token(app, "payroll", secret, resp.headers["Location"])
    assert claims["amr"] == ["pwd", "otp"] and claims["acr"] == "urn:idp:acr:mfa"


def _single_factor_session_at_wiki(app, svc, clock):
    """Ann enrols TOTP and has this browser remembered, signs out, then signs in to "wiki" with
    her password only (the remembered device skips the second factor). Returns (client, the
    redirect to wiki, her TOTP secret)."""
    uid = make_user(svc, "ann")
    t = enrol_totp(svc, uid)
    client = app.test_client()
    password_then_step(client, "ann")
    submit_code(client, code_at(t, clock), remember=True)
    client.post("/logout", data={"csrf_token": csrf(client.get("/logout").get_data(as_text=True))})
    resp = _authorize(client, "wiki")
    rid = parse_qs(urlsplit(resp.headers["Location"]).query)["r"][0]
    return client, _follow_to_rp(client, password_then_step(client, "ann", r=rid)), t


def test_step_up_by_acr_values_for_an_enrolled_user_with_remembered_device(make_app, clock):
    app, svc = _app(make_app, clock, remember_days=30)
    secret = _client_app(svc, "wiki")
    client, resp, t = _single_factor_session_at_wiki(app, svc, clock)
    claims = _id_token(app, "wiki", secret, resp.headers["Location"])
    assert claims["amr"] == ["pwd"] and claims["acr"] == "urn:idp:acr:1fa"
    # The client asks for more: the remembered device does not stand in for it.
    resp = _authorize(client, "wiki", acr_values="urn:idp:acr:mfa", prompt="login")
    rid = parse_qs(urlsplit(resp.headers["Location"]).query)["r"][0]
    assert password_then_step(client, "ann", r=rid).headers["Location"] == "/login/step"
    clock.advance(30)
    resp = _follow_to_rp(client, submit_code(client, code_at(t, clock)))
    claims = _id_token(app, "wiki", secret, resp.headers["Location"])
    assert claims["amr"] == ["pwd", "otp"] and claims["acr"] == "urn:idp:acr:mfa"


@pytest.mark.parametrize(
    "bad",
    [
        {"policies": ["team:x"]},
        {"totp_digits": 5},
        {"code_ttl_seconds": 3600},
        {"backup_codes": -1},
        {"remember_days": -1},
    ],
)
def test_bad_mfa_settings_are_refused_at_start(bad):
    from idp.errors import ConfigError
    from idp.settings import load_settings

    with pytest.raises(ConfigError, match="mfa"):
        load_settings({"mfa": bad}, environ={})


def test_required_acr_values_for_session_reuse_by_the_engines(make_app, clock):
    from idp.core.authn import AuthnRequest
    from idp.web.mfa import required_acr_values

    app, svc = _app(make_app, clock, policies=["client:payroll", "sp:https://sp.example/md"])
    make_user(svc, "ann")
    uuid = svc.sessions().scalar(select(User.uuid).where(User.username == "ann"))
    with app.test_request_context():

        def acr(protocol, client_id):
            req = AuthnRequest(protocol=protocol, resume_url="/", client_id=client_id)
            return required_acr_values(req, uuid)

        assert acr("oidc", "payroll") == ["urn:idp:acr:mfa"]
        assert acr("saml", "https://sp.example/md") == ["urn:idp:acr:mfa"]
        assert acr("oidc", "wiki") == [] and acr("saml", "payroll") == []
        assert (
            required_acr_values(
                AuthnRequest(protocol="oidc", resume_url="/", client_id="payroll"), "no-such-uuid"
            )
            == []
        )


def test_client_policy_is_not_bypassed_by_an_existing_single_factor_session(make_app, clock):
    """A session that signed in with one factor (remembered device, at a client without a
    policy) must not answer a client whose policy demands MFA: the login steps up."""
    app, svc = _app(make_app, clock, policies=["client:payroll"], remember_days=30)
    _client_app(svc, "payroll")
    wiki_secret = _client_app(svc, "wiki")
    client, resp, _ = _single_factor_session_at_wiki(app, svc, clock)
    claims = _id_token(app, "wiki", wiki_secret, resp.headers["Location"])
    assert claims["acr"] == "urn:idp:acr:1fa"  # the session is single-factor
    resp = _authorize(client, "payroll")
    assert resp.headers["Location"].startswith("/login?r="), resp.headers["Location"]
    silent = _authorize(client, "payroll", prompt="none")
    assert "error=login_required" in silent.headers["Location"]
