"""Every part is built once, by create_app, into its own app's Services (design ideas 8 and 9):
no part appears lazily on a first request, and a registration made for one app is never seen
by another app in the same process."""

import dataclasses

from login_kit import GOOD, csrf, login, make_user, user_row
from support import base_overrides

from idp.backends.chain import register_credential_backend
from idp.core.steps import enrolled_factors, factors, register_factor
from idp.delivery.sms import register_sms_sender
from idp.services import Services, build_services
from idp.settings import load_settings
from idp.sso.sessions import SessionManager, session_manager
from idp.web.account import register_consent_source
from idp.web.sso import BrowserSessions

# The protocol engines' parts: typed fields built once per app by their package's accessor on
# first use (the container sits below the engines and cannot build them).
ENGINE_PARTS = {
    "oidc_engine",
    "oidc_client_cache",
    "outbound",
    "oidc_backchannel_pool",
    "saml_backchannel_pool",
    "saml_engine",
    "broker_outbound",
    "ip_rules_cache",  # idp.sso.network.rules_cache
}
# Every field but the settings, the registries and caches (which start empty or with the
# built-ins) and the engines' parts: the parts built from settings.
BUILT_WITH_SERVICES = [
    f.name
    for f in dataclasses.fields(Services)
    if f.default_factory is dataclasses.MISSING
    and f.name != "settings"
    and f.name not in ENGINE_PARTS
]


def test_create_app_builds_every_part_before_the_first_request(make_app):
    svc = make_app().extensions["idp"]
    assert BUILT_WITH_SERVICES, "Services has no parts built from settings"
    for name in BUILT_WITH_SERVICES:
        assert getattr(svc, name, None) is not None, f"{name} is not built by create_app"
    # The Flask-bound session manager is the one every caller shares.
    assert isinstance(svc.sso_sessions, BrowserSessions)
    assert session_manager(svc) is svc.sso_sessions
    assert not hasattr(svc, "extras")  # no untyped bag of lazily built parts


def test_requests_use_the_parts_built_by_create_app(make_app):
    app = make_app()
    svc = app.extensions["idp"]
    built = {name: getattr(svc, name) for name in BUILT_WITH_SERVICES}
    make_user(svc, "ann")
    client = app.test_client()
    assert login(client, "ann", GOOD).status_code == 302
    client.get("/account/apps")
    for name, part in built.items():
        assert getattr(svc, name) is part, f"{name} was rebuilt by a request"


def test_engine_parts_are_built_once_per_app_by_their_accessor(make_app):
    from idp.oidc.clients import client_cache
    from idp.oidc.server import engine
    from idp.saml.engine import saml_idp

    first, second = (make_app().extensions["idp"] for _ in range(2))
    assert first.oidc_engine is None and first.saml_engine is None  # nothing built up front
    assert engine(first) is engine(first) is first.oidc_engine
    assert client_cache(first) is first.oidc_client_cache
    assert saml_idp(first) is saml_idp(first) is first.saml_engine
    assert engine(second) is not first.oidc_engine  # each app its own
    assert second.saml_engine is None
    from idp.broker.http import fetcher

    assert first.broker_outbound is None
    assert fetcher(first) is fetcher(first) is first.broker_outbound
    assert fetcher(first) is not fetcher(second)


def test_services_without_an_app_get_the_plain_session_manager(instance_dir):
    svc = build_services(load_settings(base_overrides(instance_dir)))
    assert type(svc.sso_sessions) is SessionManager
    assert svc.mfa_policy is not None and svc.password_hasher is not None


def test_two_apps_keep_their_registrations_apart(make_app):
    one, other = make_app(), make_app()
    svc_one, svc_other = one.extensions["idp"], other.extensions["idp"]
    # Both start with the same built-ins...
    assert svc_one.consent_sources == svc_other.consent_sources
    assert svc_one.sms_senders == svc_other.sms_senders
    assert svc_one.credential_backends == svc_other.credential_backends

    def lister(svc, user):
        return [{"key": "rp1", "name": "Only-in-one", "scopes": ["openid"]}]

    def revoker(svc, user, key):
        return None

    register_consent_source(svc_one, lister, revoker)
    register_sms_sender(svc_one, "pigeon", lambda settings: None)
    register_credential_backend(svc_one, "punchcard", lambda svc: None)
    # ...and what one app registers, only that app has.
    assert (lister, revoker) in svc_one.consent_sources
    assert (lister, revoker) not in svc_other.consent_sources
    assert "pigeon" in svc_one.sms_senders and "pigeon" not in svc_other.sms_senders
    assert "punchcard" in svc_one.credential_backends
    assert "punchcard" not in svc_other.credential_backends

    make_user(svc_one, "ann")
    pages = {}
    for name, app in (("one", one), ("other", other)):
        client = app.test_client()
        assert login(client, "ann", GOOD).status_code == 302
        pages[name] = client.get("/account/apps").get_data(as_text=True)
    assert "Only-in-one" in pages["one"]
    assert "Only-in-one" not in pages["other"]


class _PigeonFactor:
    """A plugin second factor every user has (no ``enrolled_clause``: asked one by one)."""

    id, amr, label, template = "pigeon", "otp", "carrier pigeon", None

    def enrolled(self, svc, user):
        return True

    def begin(self, svc, user, pending):
        return {}

    def verify(self, svc, user, pending, form):
        return form.get("code") == "424242"


def test_a_factor_registered_for_one_app_is_offered_by_that_app_only(make_app):
    one, other = make_app(), make_app()
    svc_one, svc_other = one.extensions["idp"], other.extensions["idp"]
    # Both are built with the built-in factors, in the chooser's order, each its own instances.
    built_in = ["backup", "totp", "email", "sms", "webauthn"]
    assert list(factors(svc_one)) == list(factors(svc_other)) == built_in
    assert all(svc_one.factors[f] is not svc_other.factors[f] for f in built_in)

    register_factor(svc_one, _PigeonFactor())
    assert "pigeon" in factors(svc_one) and "pigeon" not in factors(svc_other)

    make_user(svc_one, "ann")
    ann = user_row(svc_one, "ann")
    assert [f.id for f in enrolled_factors(svc_one, ann)] == ["pigeon"]
    assert enrolled_factors(svc_other, ann) == []

    # Over HTTP: the app that has the factor asks for it, the other signs the user in.
    client = one.test_client()
    assert login(client, "ann", GOOD).headers["Location"] == "/login/step"
    page = client.get("/login/step").get_data(as_text=True)
    resp = client.post("/login/step", data={"csrf_token": csrf(page), "code": "424242"})
    assert resp.status_code == 302 and resp.headers["Location"] != "/login/step"
    resp = login(other.test_client(), "ann", GOOD)
    assert resp.status_code == 302 and resp.headers["Location"] != "/login/step"
