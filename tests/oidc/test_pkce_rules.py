"""PKCE (RFC 7636, S256 only, RFC 9700 §2.1.1) at the token endpoint: a public client's code is
redeemed with its verifier only, and a code issued without a challenge to a client that is
public when it comes back (its registration changed in between) is refused, not redeemed
without proof. Written against the surviving mutants of tests/mutation_kit.py `pkce`;
tests/oidc/test_authorization_endpoint.py has the authorization endpoint's side. Each refusal
asserts that nothing was issued."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from oidc_support import Env, authorize, build_env, pkce, token
from sqlalchemy import func, select

from idp.oidc.clients import client_cache
from idp.storage.clients import ClientRegistry
from idp.storage.models import AuditEvent, Client

SPA = "https://spa.example.org/cb"
TURN = "https://turn.example.org/cb"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    with build_env(tmp_path_factory, {}) as built:
        svc = built.svc
        with svc.sessions.begin() as db:
            _, built.secrets["turn"] = ClientRegistry(db, svc.hasher, svc.sealer).create(
                "turn",
                name="Becomes public",
                redirect_uris=[TURN],
                grant_types=["authorization_code"],
                scope="openid",
            )
        yield built


def _issued(env: Env) -> int:
    with env.svc.sessions() as db:
        return db.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "token.issued")
        )


def test_a_code_without_a_challenge_is_refused_to_a_client_that_became_public(env):
    """First in the module: a mutation run maps the engine's construction (authlib's
    ``required`` flag among it) to this test only."""
    browser = env.client()
    got = authorize(browser, client_id="turn", redirect_uri=TURN, scope="openid")
    assert "code" in got, got
    with env.svc.sessions.begin() as db:
        row = db.get(Client, "turn")
        row.meta = {**row.meta, "token_endpoint_auth_method": "none"}
    client_cache(env.svc).bump()
    before = _issued(env)
    resp = token(
        browser,
        {
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": TURN,
            "client_id": "turn",
        },
    )
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request", resp.json
    assert "code_verifier" in resp.json["error_description"]
    assert _issued(env) == before


def _spa_code(browser) -> tuple[str, str, str]:
    verifier, challenge = pkce()
    got = authorize(
        browser,
        client_id="spa",
        redirect_uri=SPA,
        scope="openid",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    return got["code"], verifier, challenge


def _redeem(browser, code: str, **extra: str):
    return token(
        browser,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": SPA,
            "client_id": "spa",
            **extra,
        },
    )


def test_a_public_clients_code_is_redeemed_with_its_verifier_only(env):
    browser = env.client()
    code, verifier, _ = _spa_code(browser)
    before = _issued(env)
    resp = _redeem(browser, code, code_verifier=verifier)
    assert resp.status_code == 200, resp.json
    assert _issued(env) == before + 1


@pytest.mark.parametrize("wrong", ["none", "another", "the challenge"])
def test_a_public_clients_code_without_its_verifier_is_refused(env, wrong):
    browser = env.client()
    code, _, challenge = _spa_code(browser)
    extra = {
        "none": {},
        "another": {"code_verifier": pkce()[0]},
        "the challenge": {"code_verifier": challenge},
    }[wrong]
    before = _issued(env)
    resp = _redeem(browser, code, **extra)
    assert resp.status_code == 400
    assert resp.json["error"] in ("invalid_request", "invalid_grant"), resp.json
    assert _issued(env) == before
