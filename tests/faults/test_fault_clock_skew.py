"""Clock skew: the bounds of each tolerance, one second inside and one outside, on a frozen
clock (docs/security.md, "Faults": the settings and where they apply). Bounds tested elsewhere
are named there: DPoP iat (tests/oidc/test_rfc9449_dpop.py), TOTP one step back
(tests/test_mfa_totp.py); these are the ones that were not:

- a client assertion's (RFC 7523) ``iat`` and ``nbf`` may lie at most 60 s ahead;
- a SAML request's IssueInstant at most ``[saml] clock_skew`` ahead and at most
  ``request_max_age + clock_skew`` behind;
- a TOTP code two steps ahead is refused (one step either side is the window).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from joserfc import jwt as jose_jwt
from mfa_kit import code_at, enrol_totp, mfa_counts, password_then_step, signed_in, submit_code
from oidc_support import build_env
from sqlalchemy import func, select

from idp.clock import FrozenClock
from idp.saml.validate import BadMessage, check_time
from idp.storage.models import AuditEvent

ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def frozen():
    return FrozenClock()


@pytest.fixture(scope="module")
def env(tmp_path_factory, frozen):
    with build_env(tmp_path_factory, {}, clock=frozen) as env:
        yield env


def _issued(env) -> int:
    with env.svc.sessions() as db:
        return db.scalar(select(func.count()).where(AuditEvent.action == "token.issued"))


@pytest.mark.parametrize("claim", ["iat", "nbf"])
@pytest.mark.parametrize(("ahead", "accepted"), [(60, True), (61, False)])
def test_client_assertion_time_claims_ahead(env, frozen, claim, ahead, accepted):
    now = int(frozen.now())
    claims = {"iss": "jwtc", "sub": "jwtc", "aud": f"{env.svc.settings.issuer}/oauth2/token",
              "exp": now + 120, "jti": str(uuid.uuid4()), claim: now + ahead}
    assertion = jose_jwt.encode({"alg": "RS256", "kid": env.rp_key.kid}, claims, env.rp_key,
                                algorithms=["RS256"])
    before = _issued(env)
    resp = env.client().post("/oauth2/token", data={
        "grant_type": "client_credentials", "scope": "api",
        "client_assertion_type": ASSERTION, "client_assertion": assertion})
    if accepted:
        assert resp.status_code == 200 and _issued(env) == before + 1
    else:
        assert resp.status_code == 401 and resp.json["error"] == "invalid_client"
        assert "future" in resp.json["error_description"]
        assert _issued(env) == before


def _instant(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("offset", "refusal"),
    [
        (120, None),  # [saml] clock_skew ahead
        (121, "in the future"),
        (-420, None),  # request_max_age (300) + clock_skew behind
        (-421, "expired"),
    ],
)
def test_saml_issue_instant_bounds(offset, refusal):
    clock = FrozenClock(1_800_000_000.0)
    idp = SimpleNamespace(svc=SimpleNamespace(clock=clock),
                          cfg=SimpleNamespace(clock_skew=120, request_max_age=300))
    msg = SimpleNamespace(issue_instant=_instant(clock.now() + offset))
    if refusal is None:
        check_time(idp, msg)
    else:
        with pytest.raises(BadMessage, match=refusal):
            check_time(idp, msg)


def test_totp_code_two_steps_ahead_is_refused(app, svc, clock):
    from login_kit import make_user

    t = enrol_totp(svc, make_user(svc, "ann"))
    client = app.test_client()
    password_then_step(client, "ann")
    before = mfa_counts(svc)
    resp = submit_code(client, code_at(t, clock, 2))
    assert resp.status_code == 400 and "That code is not correct" in resp.get_data(as_text=True)
    assert mfa_counts(svc) == before and not signed_in(client)
