"""The SAML assertion's lifetime at its boundary, judged by an independent SP (pysaml2 with no
clock slack): the Response we write says ``NotOnOrAfter`` = IssueInstant + ``[saml]
assertion_lifetime`` in the SubjectConfirmationData and the Conditions, ``NotBefore`` = the
IssueInstant, and the SP accepts it ``assertion_lifetime`` - 1 s after it was issued and refuses
it at + 1 s. The AuthnRequest's own age and skew are tests/faults/test_fault_clock_skew.py's."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.validate import ResponseLifetimeExceed
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
from saml_support import pysaml2_sp
from support import base_overrides, init_database

from idp.clock import FrozenClock

ISSUER = "https://idp.example.org"
LIFETIME = 240  # not the default (300): the setting is what is written


def _ts(value: str) -> int:
    from calendar import timegm

    return timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.mark.parametrize(("age", "accepted"), [(LIFETIME - 1, True), (LIFETIME + 1, False)])
def test_an_assertion_lives_assertion_lifetime(instance_dir, tmp_path, monkeypatch, age, accepted):
    from idp.core.authn import acr_for
    from idp.saml.metadata import metadata
    from idp.saml.registry import SpRegistry
    from idp.saml.results import LoginNeeded, PostForm, Received
    from idp.saml.sso import resume, sso
    from idp.services import build_services
    from idp.settings import load_settings
    from idp.sso.network import Origin
    from idp.sso.sessions import SessionManager
    from idp.storage.directory import Directory, NewUser

    overrides = base_overrides(instance_dir, issuer=ISSUER, saml={"assertion_lifetime": LIFETIME})
    init_database(overrides)
    clock = FrozenClock(float(int(time.time())))  # the SP judges by the real clock
    svc = build_services(load_settings(overrides), clock=clock)
    try:
        client, sp_md = pysaml2_sp(tmp_path, metadata(svc).body, sign_requests=True)
        client.config.accepted_time_diff = 0  # no slack: the boundary is ours, to the second
        with svc.sessions.begin() as db:
            SpRegistry(db).add(sp_md, replace=True)
            uuid = Directory(db).create_user(NewUser(username="ann", email="ann@example.org")).uuid
        mgr, here = SessionManager(svc), Origin(ip="192.0.2.10")
        reqid, info = client.prepare_for_authenticate(
            entityid=f"{ISSUER}/saml/metadata",
            relay_state="/after",
            binding=BINDING_HTTP_REDIRECT,
            sigalg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        query = urlsplit(dict(info["headers"])["Location"]).query
        params = {k: v[0] for k, v in parse_qs(query).items()}
        received = Received(
            BINDING_HTTP_REDIRECT, params["SAMLRequest"], "/after", query.encode(), "/after"
        )
        answer = sso(svc, received, None, mgr, origin=here)
        assert isinstance(answer, LoginNeeded)
        session = mgr.create(uuid, ["pwd"], acr_for(["pwd"]))
        issued_at = clock.now()
        done = resume(svc, answer.rid, session.sid, mgr, origin=here)
        assert isinstance(done, PostForm)

        kwargs = {"outstanding": {reqid: "/after"}}
        # The values as written.
        tree = etree.fromstring(base64.b64decode(done.value))
        ns = {"saml": "urn:oasis:names:tc:SAML:2.0:assertion"}
        instant = _ts(tree.find(".//saml:Assertion", ns).get("IssueInstant"))
        confirmation = tree.find(".//saml:SubjectConfirmationData", ns)
        conditions = tree.find(".//saml:Conditions", ns)
        assert instant == int(issued_at)
        assert _ts(confirmation.get("NotOnOrAfter")) == instant + LIFETIME
        assert _ts(conditions.get("NotOnOrAfter")) == instant + LIFETIME
        assert _ts(conditions.get("NotBefore")) == instant

        # The SP receives it ``age`` seconds after it was issued (its clock moved on).
        from saml2 import time_util

        monkeypatch.setattr(time_util, "utc_now", lambda: int(issued_at) + age)
        if accepted:
            parsed = client.parse_authn_request_response(done.value, BINDING_HTTP_POST, **kwargs)
            assert parsed is not None and parsed.in_response_to == reqid
        else:
            with pytest.raises(ResponseLifetimeExceed):
                client.parse_authn_request_response(done.value, BINDING_HTTP_POST, **kwargs)
    finally:
        svc.engine.dispose()
