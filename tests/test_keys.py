"""Signing keys: created at init, private keys encrypted at rest (or 0600 files), JWKS
publication, rotation with overlap, SAML certificates.

Tokens are verified with PyJWT against the published JWKS: an independent implementation,
so a mistake in our JWK output cannot hide behind the same mistake in our own verifier.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt as jose_jwt
from support import base_overrides, init_database

from idp.cli import main
from idp.clock import FrozenClock
from idp.keys import KeyManager, KeyUnavailable
from idp.services import build_services
from idp.settings import load_settings

KEK = "a-key-encryption-key-of-32+-characters!"
DAY = 86400


def sign(ring, alg: str = "RS256", **claims) -> str:
    key = ring.signing_key(alg)
    payload = {"iss": "http://127.0.0.1:5000", "sub": "u1", "aud": "app", **claims}
    return jose_jwt.encode({"alg": alg, "kid": key.kid}, payload, key.jwk, algorithms=[alg])


def verify(token: str, jwks: dict) -> dict:
    """Verify with PyJWT and nothing of ours: pick the key by kid from the published set."""
    kid = pyjwt.get_unverified_header(token)["kid"]
    keyset = pyjwt.PyJWKSet.from_dict(jwks)
    key = next(k for k in keyset.keys if k.key_id == kid)
    alg = pyjwt.get_unverified_header(token)["alg"]
    return pyjwt.decode(token, key.key, algorithms=[alg], audience="app")


def published_kids(client) -> set[str]:
    return {k["kid"] for k in client.get("/jwks").json["keys"]}


@pytest.fixture
def cli_env(monkeypatch, instance_dir):
    monkeypatch.setenv("IDP_INSTANCE_DIR", str(instance_dir))
    return instance_dir


def run_cli(capsys, *args: str) -> dict:
    assert main([*args, "--json"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    return json.loads(out)


# --- creation and storage ------------------------------------------------------------------------


def test_init_creates_rsa_ec_and_ed25519(make_app):
    client = make_app().test_client()
    keys = client.get("/jwks").json["keys"]
    by_kty = {k["kty"]: k for k in keys if k["use"] == "sig"}
    assert set(by_kty) == {"RSA", "EC", "OKP"}
    rsa_n = pyjwt.utils.base64url_decode(by_kty["RSA"]["n"])
    assert len(rsa_n) * 8 >= 2048
    assert by_kty["EC"]["crv"] == "P-256"
    assert by_kty["OKP"]["crv"] == "Ed25519"
    # Request-object encryption keys (RFC 9101 §6.1) beside them, never signing.
    assert {(k["kty"], k["alg"]) for k in keys if k["use"] == "enc"} == {
        ("RSA", "RSA-OAEP-256"), ("EC", "ECDH-ES")}
    for k in keys:
        assert k["use"] in ("sig", "enc") and k["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(k), "private parts published"


def test_rsa_bits_setting_is_honoured(instance_dir):
    overrides = base_overrides(instance_dir, keys={"rsa_bits": 3072})
    init_database(overrides)
    svc = build_services(load_settings(overrides))
    ring = svc.keys.ring()
    assert ring.signing_key("RS256").jwk.as_dict()["n"]
    rsa_key = next(k for k in ring.keys if k.kty == "RSA")
    n = pyjwt.utils.base64url_decode(rsa_key.public["n"])
    assert len(n) * 8 == 3072
    svc.engine.dispose()


def test_without_encryption_key_private_keys_are_0600_files(make_app, instance_dir):
    app = make_app()
    svc = app.extensions["idp"]
    key_dir = instance_dir / "keys"
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    rows = svc.keys.list()
    assert rows and not any(r["encrypted"] for r in rows)
    for r in rows:
        path = key_dir / f"{r['kid']}.pem"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_with_encryption_key_private_keys_are_sealed_in_the_database(make_app, instance_dir):
    app = make_app(keys={"encryption_key": KEK})
    svc = app.extensions["idp"]
    assert not (instance_dir / "keys").exists()
    from sqlalchemy import select

    from idp.storage.models import SigningKey

    with svc.sessions() as db:
        sealed = db.scalars(select(SigningKey.private_enc)).all()
    assert len(sealed) == 5 and all(s and s.startswith("v1:") for s in sealed)
    assert all("PRIVATE KEY" not in s for s in sealed)
    token = sign(svc.keys.ring())
    assert verify(token, app.test_client().get("/jwks").json)["sub"] == "u1"


def test_wrong_encryption_key_is_a_clear_error(make_app, instance_dir):
    make_app(keys={"encryption_key": KEK})
    wrong = load_settings(base_overrides(instance_dir, keys={"encryption_key": "x" * 40}))
    svc = build_services(wrong)
    with pytest.raises(KeyUnavailable, match="keys.encryption_key is not the one"):
        svc.keys.ring()
    svc.engine.dispose()
    none = load_settings(base_overrides(instance_dir))
    svc = build_services(none)
    with pytest.raises(KeyUnavailable, match="encrypted but keys.encryption_key is not set"):
        svc.keys.ring()
    svc.engine.dispose()


def test_wrong_encryption_key_fails_the_cli_in_one_line(make_app, cli_env, capsys, monkeypatch):
    make_app(keys={"encryption_key": KEK})
    monkeypatch.setenv("IDP_KEYS_ENCRYPTION_KEY", "y" * 40)
    before = run_cli(capsys, "keys", "list")["keys"]
    assert main(["keys", "rotate"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be decrypted" in err
    monkeypatch.setenv("IDP_KEYS_ENCRYPTION_KEY", KEK)
    assert run_cli(capsys, "keys", "list")["keys"] == before  # nothing changed


def test_saml_certificate_for_each_rsa_key(make_app):
    svc = make_app().extensions["idp"]
    ring = svc.keys.ring()
    for key in ring.keys:
        if key.kty != "RSA":
            assert key.certificate_pem is None
            continue
        cert = x509.load_pem_x509_certificate(key.certificate_pem.encode())
        public = cert.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        n = int.from_bytes(pyjwt.utils.base64url_decode(key.public["n"]), "big")
        assert public.public_numbers().n == n
        assert cert.not_valid_after_utc.year - cert.not_valid_before_utc.year >= 9


# --- rotation ------------------------------------------------------------------------------------


def test_rotation_keeps_old_tokens_verifiable_until_the_overlap_ends(make_app, cli_env, capsys):
    clock = FrozenClock()
    app = make_app(clock=clock)
    client = app.test_client()
    km = app.extensions["idp"].keys
    old_rsa = km.ring().signing_key("RS256").kid
    old_ec = km.ring().signing_key("ES256").kid
    old_tokens = [sign(km.ring(), "RS256"), sign(km.ring(), "ES256"), sign(km.ring(), "EdDSA")]

    changes = run_cli(capsys, "keys", "rotate")["changes"]
    assert {c["kty"] for c in changes if "active" in c} == {"RSA", "EC", "OKP"}

    clock.advance(2)  # past keys.cache_seconds: the server sees what the CLI did
    jwks = client.get("/jwks").json
    for token in old_tokens:
        assert verify(token, jwks)["sub"] == "u1"  # signed before, still verifies
    new_rsa = km.ring().signing_key("RS256").kid
    assert new_rsa != old_rsa and km.ring().signing_key("ES256").kid != old_ec
    new_token = sign(km.ring(), "RS256")
    assert pyjwt.get_unverified_header(new_token)["kid"] == new_rsa
    assert verify(new_token, jwks)["sub"] == "u1"
    statuses = {r["kid"]: r["status"] for r in run_cli(capsys, "keys", "list")["keys"]}
    assert statuses[old_rsa] == "previous" and statuses[new_rsa] == "active"

    clock.advance(7 * DAY + 60)  # past keys.rotation_overlap_days
    kids = published_kids(client)
    assert old_rsa not in kids and old_ec not in kids
    assert new_rsa in kids
    with pytest.raises(StopIteration):
        verify(old_tokens[0], client.get("/jwks").json)


def test_expired_previous_keys_are_retired_by_the_next_rotation(make_app):
    clock = FrozenClock()
    svc = make_app(clock=clock).extensions["idp"]
    first = svc.keys.ring().signing_key("RS256").kid
    svc.keys.rotate()
    clock.advance(8 * DAY)
    svc.keys.rotate()
    status = {r["kid"]: r["status"] for r in svc.keys.list()}
    assert status[first] == "retired"
    assert first not in {k["kid"] for k in svc.keys.jwks()["keys"]}


def test_prepare_publishes_next_without_changing_the_signer(make_app, cli_env, capsys):
    clock = FrozenClock()
    app = make_app(clock=clock)
    km = app.extensions["idp"].keys
    signer = km.ring().signing_key("RS256").kid
    changes = run_cli(capsys, "keys", "rotate", "--prepare")["changes"]
    next_rsa = next(c["next"] for c in changes if c["kty"] == "RSA")
    clock.advance(2)
    kids = published_kids(app.test_client())
    assert {signer, next_rsa} <= kids
    assert km.ring().signing_key("RS256").kid == signer
    # Preparing twice does not pile up keys.
    again = run_cli(capsys, "keys", "rotate", "--prepare")["changes"]
    assert next(c["next"] for c in again if c["kty"] == "RSA") == next_rsa
    # The prepared key is the one that starts signing at the rotation.
    run_cli(capsys, "keys", "rotate")
    clock.advance(2)
    assert km.ring().signing_key("RS256").kid == next_rsa
    assert signer in published_kids(app.test_client())


def test_jwks_publishes_next_active_previous_but_not_retired(make_app):
    clock = FrozenClock()
    svc = make_app(clock=clock).extensions["idp"]
    first = svc.keys.ring().signing_key("ES256").kid
    svc.keys.rotate(ktys=("EC",))  # first -> previous
    second = svc.keys.ring().signing_key("ES256").kid
    clock.advance(8 * DAY)
    svc.keys.rotate(ktys=("EC",))  # first is past its overlap -> retired; second -> previous
    active = svc.keys.ring().signing_key("ES256").kid
    nxt = next(c["next"] for c in svc.keys.rotate(prepare=True, ktys=("EC",)))
    status = {r["kid"]: r["status"] for r in svc.keys.list()}
    assert [status[k] for k in (first, second, active, nxt)] == [
        "retired",
        "previous",
        "active",
        "next",
    ]
    ec_kids = {k["kid"] for k in svc.keys.jwks()["keys"] if k["kty"] == "EC" and k["use"] == "sig"}
    assert ec_kids == {nxt, active, second}


def test_another_worker_sees_a_rotation_within_cache_seconds(make_app, instance_dir):
    clock = FrozenClock()
    svc = make_app(clock=clock, keys={"cache_seconds": 5}).extensions["idp"]
    other = KeyManager(svc.sessions, svc.settings, clock)  # a second worker process's manager
    before = other.ring().signing_key("RS256").kid
    svc.keys.rotate()
    after = svc.keys.ring().signing_key("RS256").kid
    assert after != before
    clock.advance(5)
    assert other.ring().signing_key("RS256").kid == after


def test_cache_is_reused_within_cache_seconds(make_app):
    """The ring is not re-read from the database on every signature."""
    clock = FrozenClock()
    svc = make_app(clock=clock, keys={"cache_seconds": 5}).extensions["idp"]
    ring = svc.keys.ring()
    clock.advance(1)
    assert svc.keys.ring() is ring


def test_key_files_survive_a_restart(make_app, instance_dir):
    """A second process reading the same instance dir signs with the same key."""
    app = make_app()
    kid = app.extensions["idp"].keys.ring().signing_key("RS256").kid
    svc = build_services(load_settings(base_overrides(instance_dir)))
    assert svc.keys.ring().signing_key("RS256").kid == kid
    token = sign(svc.keys.ring())
    assert verify(token, app.test_client().get("/jwks").json)
    svc.engine.dispose()


def test_no_keys_is_a_clear_error(instance_dir):
    from idp.errors import ConfigError
    from idp.storage.migrate import upgrade

    svc = build_services(load_settings(base_overrides(instance_dir)))
    upgrade(svc.engine)
    with pytest.raises(ConfigError, match="run `idp init`"):
        svc.keys.ring()
    svc.engine.dispose()


def test_token_lifetime_claims_checked_by_pyjwt(make_app):
    """Sanity of the harness: PyJWT really rejects what it should (expired token)."""
    svc = make_app().extensions["idp"]
    token = sign(svc.keys.ring(), exp=int(time.time()) - 10)
    with pytest.raises(pyjwt.ExpiredSignatureError):
        verify(token, svc.keys.jwks())
    assert Path(svc.settings.instance_dir).is_dir()
