"""Client authentication at the token endpoint, rule by rule (RFC 6749 §2.3, RFC 7523 §2.2,
OIDC Core §9): each client only by the method it registered; a secret rotated out with a grace
period counts until the period ends, to the second; a client assertion's audiences, its `iat` /
`nbf` no more than 60 s ahead, its `exp` a number, its `jti` remembered until `exp` plus the
leeway; an HMAC client without a stored secret and a key client whose key set is unusable
verify nothing. Written against the surviving mutants of tests/mutation_kit.py `client_auth`;
every refusal asserts that nothing was issued or remembered."""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Iterator

import pytest
from instance_template import initialised
from joserfc import jwt as jose_jwt
from joserfc.jwk import OctKey, RSAKey
from oidc_support import Env
from sqlalchemy import func, select, update
from support import store_keys

from idp.clock import FrozenClock
from idp.core.client_metadata import FAPI2_SECURITY, FAPI_ALGS
from idp.manage.clients import rotate_secret
from idp.manage.context import Actor, transaction
from idp.oidc.clients import client_cache
from idp.storage.clients import ClientRegistry
from idp.storage.models import AuditEvent, Client, KVEntry

LOCAL_RPS = {"allow_http": True, "allow_private_addresses": True}
ISSUER = "http://127.0.0.1:5000"
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    # Real time: authlib checks an assertion's exp against the system clock as well.
    return FrozenClock(float(int(time.time())))


@pytest.fixture(scope="module")
def env(tmp_path_factory, clock) -> Iterator[Env]:
    """The app with one client per way of authenticating (and two broken ones)."""
    from idp.app import create_app

    instance = tmp_path_factory.mktemp("client-auth") / "instance"
    # The refusals here are many and all from 127.0.0.1: the rate limit of refused client
    # authentications (tests/test_rate_limits.py) is raised out of their way.
    limits = {"client_auth_per_address": 1000, "client_auth_per_client": 1000}
    app = create_app(initialised(instance, outbound=LOCAL_RPS, rate_limits=limits), clock=clock)
    app.config["TESTING"] = True
    svc = app.extensions["idp"]
    rp_key = RSAKey.generate_key(2048, parameters={"kid": "rp-1", "use": "sig"})
    made: dict[str, str] = {}
    cc = {"grant_types": ["client_credentials"], "scope": "api"}
    with svc.sessions.begin() as db:
        reg = ClientRegistry(db, svc.hasher, svc.sealer)
        _, made["plain"] = reg.create("plain", name="Basic service", **cc)
        _, made["poster"] = reg.create(
            "poster", name="Posting service", auth_method="client_secret_post", **cc
        )
        _, made["hsc"] = reg.create(
            "hsc", name="HMAC client", auth_method="client_secret_jwt", **cc
        )
        _, made["hsc-bare"] = reg.create(
            "hsc-bare",
            name="HMAC client without a sealed secret",
            auth_method="client_secret_jwt",
            **cc,
        )
        reg.create(
            "jwtc",
            name="Key client",
            auth_method="private_key_jwt",
            extra={"jwks": {"keys": [rp_key.as_dict(private=False)]}},
            **cc,
        )
        reg.create(
            "bank",
            name="FAPI 2.0 key client",
            auth_method="private_key_jwt",
            extra={
                "jwks": {"keys": [rp_key.as_dict(private=False)]},
                "fapi_profile": FAPI2_SECURITY,
            },
            **cc,
        )
        reg.create(
            "jwtc-broken",
            name="Key client with an unusable key set",
            auth_method="private_key_jwt",
            extra={"jwks": {"keys": [{"kty": "RSA", "n": "AQAB"}]}},
            **cc,
        )
        db.execute(update(Client).where(Client.client_id == "hsc-bare").values(secret_enc=None))
    try:
        yield Env(app, svc, made, rp_key)
    finally:
        svc.engine.dispose()


@pytest.fixture(autouse=True)
def _real_time(clock: FrozenClock) -> None:
    """Each test starts with the frozen clock at the system time, which authlib reads too."""
    clock.advance(int(time.time()) - clock.now())


def _state(env: Env) -> dict:
    """Token audit rows and the live store keys, less the refusal counter of the rate limits
    (the one thing a refused client authentication may write: tests/test_rate_limits.py)."""
    svc = env.svc
    with svc.sessions() as db:
        issued = db.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "token.issued")
        )
        keys = set(db.scalars(select(KVEntry.key).where(KVEntry.expires_at > svc.clock.now())))
    return {"issued": issued, "keys": {k for k in keys if not k.startswith("rl:client_auth:")}}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _cc_basic(env: Env, client_id: str, secret: str):
    return env.client().post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(client_id, secret),
    )


def _cc_post(env: Env, client_id: str, secret: str):
    return env.client().post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


def _refused(resp, description: str | None = None) -> None:
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert resp.json["error"] == "invalid_client"
    if description is not None:
        assert resp.json.get("error_description") == description


# --- first, so that a mutation run maps the engine's construction to it -----------------------


def test_an_expired_assertion_is_accepted_within_the_60_second_leeway(env, monkeypatch):
    """authlib checks exp with joserfc against the system clock, with the leeway we give it
    (held still here, so that the boundary is to the second)."""
    import joserfc._rfc7519.claims as joserfc_claims

    now = int(time.time())
    monkeypatch.setattr(joserfc_claims, "_generate_now", lambda: now)
    assert _cc(env, _rs(env, exp=now - 59, iat=now - 120)).status_code == 200
    before = _state(env)
    _refused(_cc(env, _rs(env, exp=now - 60, iat=now - 120)))
    assert _state(env) == before


# --- secrets: the registered method only -------------------------------------------------------


def test_each_client_authenticates_only_by_its_registered_method(env):
    before = _state(env)
    _refused(_cc_post(env, "plain", env.secrets["plain"]))  # registered client_secret_basic
    _refused(_cc_basic(env, "poster", env.secrets["poster"]))  # registered client_secret_post
    _refused(_cc_basic(env, "plain", env.secrets["plain"] + "x"))
    _refused(_cc_post(env, "poster", env.secrets["poster"][:-1]))
    assert _state(env) == before
    assert _cc_basic(env, "plain", env.secrets["plain"]).status_code == 200
    assert _cc_post(env, "poster", env.secrets["poster"]).status_code == 200


def test_a_rotated_out_secret_counts_for_its_grace_period_to_the_second(env, clock):
    with transaction(env.svc, Actor.operator("test")) as ctx:
        new = rotate_secret(ctx, "poster", grace_seconds=30)
    old, env.secrets["poster"] = env.secrets["poster"], new
    clock.advance(29)
    assert _cc_post(env, "poster", old).status_code == 200
    assert _cc_post(env, "poster", new).status_code == 200
    _refused(_cc_post(env, "poster", "not-" + old))  # the grace period is for the old one only
    clock.advance(2)
    before = _state(env)
    _refused(_cc_post(env, "poster", old))
    assert _state(env) == before
    assert _cc_post(env, "poster", new).status_code == 200


def test_a_rotation_without_grace_ends_the_old_secret_at_once(env):
    with transaction(env.svc, Actor.operator("test")) as ctx:
        new = rotate_secret(ctx, "plain", grace_seconds=0)
    old, env.secrets["plain"] = env.secrets["plain"], new
    before = _state(env)
    _refused(_cc_basic(env, "plain", old))
    assert _state(env) == before
    assert _cc_basic(env, "plain", new).status_code == 200


# --- client assertions (RFC 7523) ---------------------------------------------------------------


def _claims(client_id: str, **overrides) -> dict:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{ISSUER}/oauth2/token",
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _rs(env: Env, client_id: str = "jwtc", alg: str = "RS256", **overrides) -> str:
    return jose_jwt.encode(
        {"alg": alg, "kid": env.rp_key.kid},
        _claims(client_id, **overrides),
        env.rp_key,
        algorithms=[alg],
    )


def _hs(secret: str, client_id: str = "hsc", alg: str = "HS256", **overrides) -> str:
    return jose_jwt.encode(
        {"alg": alg}, _claims(client_id, **overrides), OctKey.import_key(secret), algorithms=[alg]
    )


def _cc(env: Env, assertion: str, kind: str = ASSERTION):
    return env.client().post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": kind,
            "client_assertion": assertion,
        },
    )


@pytest.mark.parametrize(
    "aud",
    [
        ISSUER,
        f"{ISSUER}/oauth2/token",
        f"{ISSUER}/oauth2/introspect",
        f"{ISSUER}/oauth2/revoke",
        f"{ISSUER}/oauth2/par",
    ],
)
def test_every_audience_of_ours_is_accepted(env, aud):
    assert _cc(env, _rs(env, aud=aud)).status_code == 200
    assert _cc(env, _hs(env.secrets["hsc"], aud=aud)).status_code == 200


@pytest.mark.parametrize(
    "aud", [f"{ISSUER}/", f"{ISSUER}/oauth2/userinfo", "http://127.0.0.1:5001/oauth2/token"]
)
def test_another_audience_is_refused(env, aud):
    before = _state(env)
    _refused(_cc(env, _rs(env, aud=aud)))
    assert _state(env) == before


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_iat_and_nbf_may_be_60_seconds_ahead_not_61(env, clock, claim):
    now = int(clock.now())
    assert _cc(env, _rs(env, **{claim: now + 60, "exp": now + 120})).status_code == 200
    before = _state(env)
    _refused(
        _cc(env, _rs(env, **{claim: now + 61, "exp": now + 120})),
        f"Client assertion '{claim}' is in the future.",
    )
    _refused(_cc(env, _rs(env, **{claim: "soon"})), f"Client assertion '{claim}' is in the future.")
    assert _state(env) == before


@pytest.mark.parametrize(("lifetime", "good"), [(600, True), (601, False)])
def test_an_assertion_lives_at_most_client_assertion_max_age(env, clock, lifetime, good):
    now = int(clock.now())
    resp = _cc(env, _rs(env, exp=now + lifetime, iat=None))
    if good:
        assert resp.status_code == 200, resp.json
        return
    before = _state(env)
    _refused(resp, "Client assertion lives too long.")
    assert _state(env) == before


def test_exp_must_be_a_number(env):
    before = _state(env)
    for exp in ("tomorrow", None):
        _refused(_cc(env, _rs(env, exp=exp)), "Client assertion lives too long.")
    assert _state(env) == before


def _expires_at(svc, key: str) -> float:
    """When the store forgets ``key``: the row's expiry (SQL), or now plus its TTL (Redis,
    which expires in real time; the module's clock follows the system time)."""
    store = svc.store
    if hasattr(store, "_redis"):
        return time.time() + store._redis.pttl(store._prefix + key) / 1000
    with svc.sessions() as db:
        return db.scalar(select(KVEntry.expires_at).where(KVEntry.key == key))


def test_the_jti_is_remembered_until_exp_plus_the_leeway(env, clock):
    now = int(clock.now())
    for lifetime, remembered in ((300, 360), (-30, 60)):
        jti = str(uuid.uuid4())
        assert _cc(env, _rs(env, exp=now + lifetime, iat=now - 60, jti=jti)).status_code == 200
        (key,) = [k for k in store_keys(env.svc) if jti in k]
        assert key.endswith(f"jwtc:{jti}")
        assert _expires_at(env.svc, key) == pytest.approx(now + remembered, abs=2)
        replay = _rs(env, exp=now + lifetime, iat=now - 60, jti=jti)
        before = _state(env)
        _refused(_cc(env, replay))
        assert _state(env) == before


def test_a_long_jti_is_remembered_by_its_first_characters(env):
    """Store keys are cut to 250 characters ("jti:<sub>:<jti>"): two jtis alike up to there
    are one jti, and a character before the cut tells them apart."""
    cut = 250 - len("jti:jwtc:")
    jti = "j" * 300
    assert _cc(env, _rs(env, jti=jti)).status_code == 200
    before = _state(env)
    _refused(_cc(env, _rs(env, jti=jti[:cut] + "k" + jti[cut + 1 :])))
    assert _state(env) == before
    assert _cc(env, _rs(env, jti=jti[: cut - 1] + "k" + jti[cut:])).status_code == 200


def test_each_assertion_only_for_its_registered_method(env):
    before = _state(env)
    # jwtc registered private_key_jwt: an HMAC assertion keyed with anything is not its.
    _refused(_cc(env, _hs("x" * 48, client_id="jwtc")))
    # hsc registered client_secret_jwt: an RSA-signed assertion is not its.
    _refused(_cc(env, _rs(env, client_id="hsc")))
    # A secret client's own secret as an HMAC key does not make it an assertion client.
    _refused(_cc(env, _hs(env.secrets["plain"], client_id="plain")))
    # Not the jwt-bearer assertion type: no assertion client answers.
    _refused(_cc(env, _rs(env), kind="urn:ietf:params:oauth:client-assertion-type:saml2-bearer"))
    # A sub that is not a string names no client.
    _refused(_cc(env, _rs(env, sub=123)))
    assert _state(env) == before
    assert _cc(env, _rs(env)).status_code == 200
    assert _cc(env, _hs(env.secrets["hsc"])).status_code == 200


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_client_secret_jwt_takes_each_hmac_alg(env, alg):
    assert _cc(env, _hs(env.secrets["hsc"], alg=alg)).status_code == 200


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_private_key_jwt_takes_the_rsa_algs(env, alg):
    assert _cc(env, _rs(env, alg=alg)).status_code == 200


def _logged(caplog, msg: str, arg: type | str = Exception) -> bool:
    """A log line ``msg`` carrying the exception that refused (or the reason ``arg``)."""
    return any(
        r.msg == msg
        and len(r.args) == 1
        and (r.args[0] == arg if isinstance(arg, str) else isinstance(r.args[0], arg))
        for r in caplog.records
    )


def test_an_hmac_client_without_a_stored_secret_verifies_nothing(env, caplog):
    before = _state(env)
    with caplog.at_level(logging.INFO, logger="idp"):
        _refused(
            _cc(env, _hs(env.secrets["hsc-bare"], client_id="hsc-bare")),
            "Invalid client assertion.",
        )
    assert _logged(caplog, "client assertion refused: %s")
    assert _state(env) == before


def test_a_key_client_with_an_unusable_key_set_is_refused(env, caplog):
    before = _state(env)
    with caplog.at_level(logging.INFO, logger="idp"):
        _refused(_cc(env, _rs(env, client_id="jwtc-broken")), "The client's key set is not usable.")
    assert _logged(caplog, "client keys unusable: %s")
    assert _state(env) == before


def test_a_fapi_client_assertion_is_ps256_es256_or_eddsa_for_the_issuer(env, caplog):
    """FAPI 2.0 §5.3.2.1: read before the signature; the refusal says why and logs it."""
    algs = f"the client assertion must be signed with {', '.join(FAPI_ALGS)} (FAPI 2.0)"
    aud = "the client assertion's aud must be the issuer identifier as a string (FAPI 2.0)"
    before = _state(env)
    for assertion, why in (
        (_rs(env, "bank", "RS256", aud=ISSUER), algs),
        (_rs(env, "bank", "PS256"), aud),
        (_rs(env, "bank", "PS256", aud=[ISSUER]), aud),
    ):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="idp"):
            _refused(_cc(env, assertion), why)
        assert _logged(caplog, "client assertion refused: %s", why)
    assert _state(env) == before
    # The same rules do not apply to a client without the profile.
    assert _cc(env, _rs(env, "jwtc", "RS256")).status_code == 200
    # A profile client's good assertion authenticates it (the grant may still refuse).
    resp = _cc(env, _rs(env, "bank", "PS256", aud=ISSUER))
    assert resp.status_code != 401 and resp.json.get("error") != "invalid_client", resp.json


def test_the_cache_serves_a_client_by_its_registered_method(env):
    """The parsed client the token endpoint used answers the method it was registered with."""
    cache = client_cache(env.svc)
    assert cache.get("plain").check_endpoint_auth_method("client_secret_basic", "token")
    assert not cache.get("plain").check_endpoint_auth_method("client_secret_post", "token")
    assert cache.get("poster").check_endpoint_auth_method("client_secret_post", "token")
