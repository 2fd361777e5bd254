"""The SAML engine (idp.saml) runs on plain values, without Flask: no app, no request context.
A pysaml2 SP's AuthnRequest goes in as the parameters a browser would carry; the login is
asked for while there is no SSO session, the pending request is finished once there is one,
and the SP validates the signed Response the engine answers."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_support import pysaml2_sp
from support import base_overrides, init_database

pytestmark = pytest.mark.slow

ISSUER = "https://idp.example.org"


def _redirect_request(client) -> tuple[str, dict[str, str], bytes]:
    """(request id, query parameters, raw query string) of an HTTP-Redirect AuthnRequest."""
    reqid, info = client.prepare_for_authenticate(
        entityid=f"{ISSUER}/saml/metadata",
        relay_state="/after",
        binding=BINDING_HTTP_REDIRECT,
        sigalg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
    )
    query = urlsplit(dict(info["headers"])["Location"]).query
    params = {k: v[0] for k, v in parse_qs(query).items()}
    return reqid, params, query.encode()


def _received(params: dict[str, str], query: bytes):
    from idp.saml.results import Received

    relay = params.get("RelayState")
    return Received(BINDING_HTTP_REDIRECT, params["SAMLRequest"], relay, query, relay)


def test_sso_engine_answers_plain_data_without_flask(instance_dir, tmp_path):
    import flask

    from idp.core.authn import acr_for
    from idp.saml.metadata import metadata
    from idp.saml.registry import SpRegistry
    from idp.saml.results import LoginNeeded, PostForm, Refused
    from idp.saml.sso import resume, sso
    from idp.services import build_services
    from idp.settings import load_settings
    from idp.sso.network import Origin
    from idp.sso.sessions import SessionManager
    from idp.storage.directory import Directory, NewUser

    overrides = base_overrides(instance_dir, issuer=ISSUER)
    init_database(overrides)
    svc = build_services(load_settings(overrides))
    try:
        client, sp_md = pysaml2_sp(tmp_path, metadata(svc).body, sign_requests=True)
        with svc.sessions.begin() as db:
            SpRegistry(db).add(sp_md, replace=True)
            user = Directory(db).create_user(
                NewUser(
                    username="alice",
                    email="alice@example.org",
                    given_name="Alice",
                    family_name="Liddell",
                )
            )
            user_uuid = user.uuid
        mgr = SessionManager(svc)
        here = Origin(ip="192.0.2.10")  # where the request came from: plain data too
        assert not flask.has_app_context() and not flask.has_request_context()

        # No SSO session: the login takes the request over, under a pending request id.
        first_id, params, query = _redirect_request(client)
        answer = sso(svc, _received(params, query), None, mgr, origin=here)
        assert isinstance(answer, LoginNeeded)
        pending = mgr.load_request(answer.rid)
        assert pending is not None and pending.protocol == "saml"
        assert pending.resume_url == f"/saml/resume?r={answer.rid}"

        # The same request again is a replay, whatever the session.
        assert isinstance(sso(svc, _received(params, query), None, mgr, origin=here), Refused)

        # The login made a session; the pending request is finished with it, once.
        session = mgr.create(user_uuid, ["pwd"], acr_for(["pwd"]))
        done = resume(svc, answer.rid, session.sid, mgr, origin=here)
        assert isinstance(done, PostForm)
        assert (done.action, done.field, done.relay_state) == (
            "https://sp.example.org/acs",
            "SAMLResponse",
            "/after",
        )
        assert done.user_locale == ""
        parsed = client.parse_authn_request_response(
            done.value, BINDING_HTTP_POST, outstanding={first_id: "/after"}
        )
        assert parsed is not None and parsed.in_response_to == first_id
        assert parsed.get_identity()["mail"] == ["alice@example.org"]
        assert isinstance(resume(svc, answer.rid, session.sid, mgr, origin=here), Refused)

        # A new request in the session is answered at once.
        second_id, params, query = _redirect_request(client)
        answer = sso(svc, _received(params, query), session.sid, mgr, origin=here)
        assert isinstance(answer, PostForm)
        parsed = client.parse_authn_request_response(
            answer.value, BINDING_HTTP_POST, outstanding={second_id: "/after"}
        )
        assert parsed is not None and parsed.in_response_to == second_id
    finally:
        svc.engine.dispose()


def test_saml_engine_imports_no_web_framework():
    code = (
        "import sys, idp.saml.sso, idp.saml.logout, idp.saml.metadata\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flask', 'werkzeug', 'flask_babel', 'flask_wtf') or m.startswith('idp.web') "
        "or m == 'idp.app')\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == "[]"
