"""The attack suite, OAuth / OIDC part (issue 22). Each test tries an attack on the served or
test-client app and asserts the safe outcome *and* that nothing changed: users, clients, refresh
tokens, consents, audit rows, SSO sessions and the short-lived store's codes, pending requests
and pushed requests are counted before and after (``State``).

Attacks that older tests already prove to fail are not repeated here; docs/security.md
("Attack suite: OAuth and OIDC") names them beside the ones below. Outbound fetches: the
module's app has the tests' open [outbound] settings (http and loopback allowed), so a URL the
server must never fetch (``jku``, ``x5u``) points at a local recorder that would see the hit;
the SSRF tests use a second app with the default (strict) settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import RSAKey
from oidc_support import PASSWORD, RP, authorize, build_env, follow, login, pkce, query, token
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from idp.storage.models import AuditEvent, Client, KVEntry, User
from idp.storage.models_auth import SsoSessionIndex
from idp.storage.models_oauth import Consent, RefreshToken

ISSUER = "http://127.0.0.1:5000"
TOKEN_URL = f"{ISSUER}/oauth2/token"
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OPEN_OUTBOUND = {"allow_http": True, "allow_private_addresses": True, "timeout": 1}
# Short-lived entries an attack must not leave behind (rate-limit counters and replay marks of
# refused requests may be written: they are the defence, not the attacker's gain).
STORED_PREFIXES = ("code:", "authreq:", "par", "oidc:", "device:", "devuser:")


# --- state before and after ----------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    users: tuple
    clients: tuple
    refresh_tokens: tuple
    consents: int
    audit: int
    sso_sessions: int
    stored: tuple

    @classmethod
    def of(cls, svc) -> State:
        with svc.sessions() as db:
            users = tuple(
                db.execute(
                    select(
                        User.id, User.username, User.email, User.status, User.updated_at
                    ).order_by(User.id)
                ).all()
            )
            clients = tuple(
                db.execute(
                    select(Client.client_id, Client.updated_at).order_by(Client.client_id)
                ).all()
            )
            refresh = tuple(
                db.execute(
                    select(
                        RefreshToken.token_hash, RefreshToken.used_at, RefreshToken.revoked
                    ).order_by(RefreshToken.token_hash)
                ).all()
            )
            consents = db.scalar(select(func.count()).select_from(Consent))
            audit = db.scalar(select(func.count()).select_from(AuditEvent))
            sso = db.scalar(select(func.count()).select_from(SsoSessionIndex))
            stored = tuple(
                k
                for k in db.scalars(select(KVEntry.key).order_by(KVEntry.key))
                if k.startswith(STORED_PREFIXES)
            )
        return cls(users, clients, refresh, consents, audit, sso, stored)


# --- the module's app ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with build_env(tmp_path_factory, OPEN_OUTBOUND) as built:
        yield built


class Recorder:
    """A loopback HTTP server that answers ``body`` and records every request it gets."""

    def __init__(self, body: bytes = b"{}") -> None:
        self.hits: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any  # noqa: N815 - http.server's names

            def log_message(self, *args):
                return

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request, client_address):
                recorder.hits.append(f"connection from {client_address[0]}")  # TLS too
                return True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Recorder:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- look-alike usernames (RFC 8265 PRECIS; Unicode TR 36 / TR 39) --------------------------------
#
# A username is ASCII letters, digits and . _ @ + - (USERNAME_RE), unique without regard to
# case: stricter than PRECIS UsernameCaseMapped (RFC 8265 §3.3), whose width mapping and case
# mapping it agrees with on ASCII. No other script, no compatibility form and no invisible
# character can be part of one, so two accounts never look alike; a typed login is compared
# after strip() and lower() only (what Keycloak does), never after NFKC, so a look-alike
# typed at /login reaches no account. Each spelling below is refused wherever a username is
# made or changed.

LOOKALIKES = {
    "full-width": "\uff41\uff4c\uff49\uff43\uff45",  # ａｌｉｃｅ
    "cyrillic a": "\u0430lice",
    "capital I with dot": "AL\u0130CE",
    "dotless i": "al\u0131ce",
    "zero-width space": "al\u200bice",
    "combining acute": "alice\u0301",
    "trailing newline": "alice\n",
    "trailing space": "alice ",
    "no-break space": "alice\u00a0",
    "upper case": "ALICE",
    "ligature fi": "\ufb01ona",
    "mathematical bold": "\U0001d41a\U0001d425\U0001d422\U0001d41c\U0001d41e",
    "kelvin sign": "\u212aate",
}


@pytest.fixture(scope="module")
def admin_token(env):
    from api_kit import service_token

    from idp.backends.chain import password_hasher
    from idp.storage.directory import Directory, NewUser

    hasher = password_hasher(env.svc)
    with env.svc.sessions.begin() as db:
        d = Directory(db)
        for name in ("fiona", "kate"):
            d.create_user(
                NewUser(
                    username=name, email=f"{name}@example.org", password_hash=hasher.hash(PASSWORD)
                )
            )
    return {
        "admin": service_token(env.app, scope="admin"),
        "scim": service_token(env.app, scope="scim"),
    }


def _api(env, method: str, path: str, token_: str, **kw):
    headers = {"Authorization": f"Bearer {token_}", **kw.pop("headers", {})}
    return env.client().open(path, method=method, headers=headers, **kw)


@pytest.mark.parametrize("name", list(LOOKALIKES.values()), ids=list(LOOKALIKES))
def test_lookalike_username_is_refused_on_every_path_that_makes_one(env, admin_token, name):
    from scim_kit import SCIM, USER

    from idp.errors import Conflict, ValidationError
    from idp.manage import Actor, transaction
    from idp.manage import users as manage_users
    from idp.storage.directory import NewUser

    before = State.of(env.svc)
    # the service layer (the CLI, the console and self-registration call it)
    with pytest.raises((ValidationError, Conflict)):
        with transaction(env.svc, Actor.operator("test")) as ctx:
            manage_users.create(ctx, NewUser(username=name, email="x1@example.org"))
    # admin API
    resp = _api(
        env,
        "POST",
        "/api/v1/users",
        admin_token["admin"],
        json={"username": name, "email": "x2@example.org"},
    )
    assert resp.status_code in (400, 409, 422), resp.get_data(as_text=True)[:300]
    assert resp.mimetype == "application/problem+json"
    # SCIM (RFC 7644 §3.3)
    resp = _api(
        env,
        "POST",
        "/scim/v2/Users",
        admin_token["scim"],
        data=json.dumps({"schemas": [USER], "userName": name}),
        headers={"Content-Type": SCIM},
    )
    assert resp.status_code in (400, 409), resp.get_data(as_text=True)[:300]
    # CSV import
    csv = f'username,email\n"{name}",x3@example.org\n'.encode()
    resp = _api(
        env,
        "POST",
        "/api/v1/users/import",
        admin_token["admin"],
        content_type="multipart/form-data",
        data={
            "file": (io.BytesIO(csv), "users.csv"),
            "match": "email",
            "dry_run": "false",
            "atomic": "true",
        },
    )
    assert resp.status_code in (200, 400, 409, 422), resp.get_data(as_text=True)[:300]
    if resp.status_code == 200:
        assert [row["status"] for row in resp.json["rows"]] != ["created"], resp.json
    # renaming bob to the look-alike: admin API and SCIM PATCH
    with env.svc.sessions() as db:
        bob = db.scalar(select(User.uuid).where(User.username == "bob"))
    resp = _api(env, "PATCH", f"/api/v1/users/{bob}", admin_token["admin"], json={"username": name})
    assert resp.status_code in (400, 409, 422), resp.get_data(as_text=True)[:300]
    resp = _api(
        env,
        "PATCH",
        f"/scim/v2/Users/{bob}",
        admin_token["scim"],
        headers={"Content-Type": SCIM},
        data=json.dumps(
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "userName", "value": name}],
            }
        ),
    )
    assert resp.status_code in (400, 409), resp.get_data(as_text=True)[:300]
    after = State.of(env.svc)
    assert after.users == before.users and after.clients == before.clients
    assert after.refresh_tokens == before.refresh_tokens


@pytest.mark.parametrize("name", list(LOOKALIKES.values()), ids=list(LOOKALIKES))
def test_lookalike_login_reaches_no_account(env, admin_token, name):
    """alice's (fiona's, kate's) password with a look-alike of her name signs nobody in and
    leaves her account as it was. Case, surrounding spaces and the Kelvin sign (whose lower
    case is "k" in Unicode itself) are the same name: those sign her in, as in Keycloak."""
    from idp.storage.directory import USERNAME_RE

    c = env.client()
    before = State.of(env.svc)
    resp = login(c, username=name, password=PASSWORD)
    same_name = name.strip().lower()
    if USERNAME_RE.fullmatch(same_name):
        assert resp.status_code in (302, 303), name  # the very account, spelt another way
        return
    assert resp.status_code in (200, 401) and "Location" not in resp.headers
    account = c.get("/account/")
    assert account.status_code in (302, 303) and "/login" in account.headers["Location"]
    after = State.of(env.svc)
    assert after.users == before.users and after.sso_sessions == before.sso_sessions


# --- code and refresh replay, in parallel on a served app (RFC 6749 §4.1.2, RFC 9700 §4.14) ---


@pytest.fixture(params=["sql store", "redis store"])
def served_pg(request, pg_url, tmp_path_factory):
    """The app on its own PostgreSQL database (codes and markers in the SQL store or in Redis),
    served by a threaded werkzeug server on loopback: parallel requests are parallel
    transactions."""
    from werkzeug.serving import make_server

    settings: dict[str, Any] = {"database_url": pg_url}
    if request.param == "redis store":
        settings["redis_url"] = request.getfixturevalue("redis_url")
        settings["store"] = {"redis_prefix": f"atk-{uuid.uuid4().hex[:8]}:"}
    with build_env(tmp_path_factory, OPEN_OUTBOUND, **settings) as built:
        server = make_server("127.0.0.1", 0, built.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield built, f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join(10)


def _race(base: str, data: dict, auth: tuple[str, str], n: int = 8) -> list:
    """``n`` threads post the same token request at once; their answers."""
    import requests

    barrier = threading.Barrier(n)
    answers: list = [None] * n

    def one(i: int) -> None:
        barrier.wait(10)
        answers[i] = requests.post(f"{base}/oauth2/token", data=data, auth=auth, timeout=30)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def _audit(svc, action: str) -> list[dict]:
    with svc.sessions() as db:
        return [
            dict(e.details or {})
            for e in db.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        ]


def test_parallel_code_and_refresh_redemption_on_postgresql(served_pg):
    """Eight redemptions of one code at once: one wins, seven get invalid_grant, and the
    seven are replays that revoke what the winner got (its access token and refresh token
    die). Then eight refreshes of one refresh token at once: one wins, the rest are reuse,
    the whole family is revoked, the winner's new refresh token included."""
    import requests

    env, base = served_pg
    auth = ("web", env.secrets["web"])
    got = authorize(env.client(), scope="openid offline_access")
    answers = _race(
        base, {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP}, auth
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [400] * 7, [a.text[:200] for a in answers]
    assert all(a.json()["error"] == "invalid_grant" for a in answers if a.status_code == 400)
    won = next(a.json() for a in answers if a.status_code == 200)
    info = requests.get(
        f"{base}/oauth2/userinfo",
        timeout=10,
        headers={"Authorization": f"Bearer {won['access_token']}"},
    )
    assert info.status_code == 401
    again = requests.post(
        f"{base}/oauth2/token",
        auth=auth,
        timeout=10,
        data={"grant_type": "refresh_token", "refresh_token": won["refresh_token"]},
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert any(e.get("reason") == "code_replay" for e in _audit(env.svc, "token.revoked"))

    got = authorize(env.client(), scope="openid offline_access")
    first = requests.post(
        f"{base}/oauth2/token",
        auth=auth,
        timeout=10,
        data={"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
    ).json()
    answers = _race(
        base, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [400] * 7, [a.text[:200] for a in answers]
    won = next(a.json() for a in answers if a.status_code == 200)
    again = requests.post(
        f"{base}/oauth2/token",
        auth=auth,
        timeout=10,
        data={"grant_type": "refresh_token", "refresh_token": won["refresh_token"]},
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    with env.svc.sessions() as db:
        rows = db.execute(
            select(
                RefreshToken.grant_id,
                RefreshToken.used_at,
                RefreshToken.revoked,
                RefreshToken.created_at,
            )
        ).all()
    assert rows and all(r.revoked for r in rows), (
        rows
    )  # every refresh token of both families is revoked
    assert any(e.get("reason") == "refresh_token_reuse" for e in _audit(env.svc, "token.revoked"))


def test_a_replay_between_the_codes_take_and_its_tokens_revokes_them_for_good(env):
    """The interleaving the parallel test hits by chance, made certain: a second redemption
    runs right after the first took the code from the store, before the first saved its
    tokens. The second is a replay (RFC 6749 §4.1.2: deny, revoke what the code issued), and
    what the first then saves is revoked in the database too, not only by the store's
    marker, which lives an hour: the refresh token still fails after that hour."""
    from idp.clock import FrozenClock

    svc = env.svc
    auth = ("web", env.secrets["web"])
    got = authorize(env.client(), scope="openid offline_access")
    data = {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP}
    real_take = svc.store.take
    losers: list = []

    def take(key: str):
        value = real_take(key)
        if key.startswith("code:") and not losers:
            losers.append(None)
            losers[0] = token(env.client(), data, auth=auth)
        return value

    svc.store.take = take
    try:
        won = token(env.client(), data, auth=auth)
    finally:
        del svc.store.take
    assert won.status_code == 200, won.json
    assert losers[0].status_code == 400 and losers[0].json["error"] == "invalid_grant"
    with svc.sessions() as db:
        grant = db.scalar(
            select(RefreshToken.grant_id).order_by(RefreshToken.created_at.desc()).limit(1)
        )
        rows = db.scalars(select(RefreshToken.revoked).where(RefreshToken.grant_id == grant)).all()
    assert rows == [True]
    real_clock, later = svc.clock, FrozenClock(svc.clock.now() + 3700)
    svc.clock = svc.store._clock = later
    try:
        again = token(
            env.client(),
            {"grant_type": "refresh_token", "refresh_token": won.json["refresh_token"]},
            auth=auth,
        )
    finally:
        svc.clock = svc.store._clock = real_clock
    assert again.status_code == 400 and again.json["error"] == "invalid_grant"


# --- JWT: alg none, key confusion, jku / x5u / jwk / kid injection (RFC 8725 §2, §3.1) -----------
#
# Four places take a JWT from outside: private_key_jwt client assertions (RFC 7523), request
# objects (RFC 9101), id_token_hint (at /oauth2/authorize and /oauth2/logout) and DPoP proofs
# (RFC 9449). Each forged token below must be refused, with no request reaching the recorder
# its jku / x5u names (the module's app may fetch from loopback: only the refusal to fetch a
# header's URL keeps it away) and nothing stored.


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _by_hand(header: dict, claims: dict, secret: bytes | None = None) -> str:
    """A JWS no library would make: ``alg`` none (empty signature) or HS256 keyed with
    ``secret`` (a public key's PEM or JWK text: the key-confusion attack)."""
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    if secret is None:
        return signing_input + "."
    return (
        signing_input
        + "."
        + _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    )


class Attacker:
    """The attacker's own RSA key, published at a loopback recorder as a JWKS (and an x5u
    URL): what a jku / x5u / embedded jwk header would make a careless verifier trust."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa
        from jwt.algorithms import RSAAlgorithm

        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.jwk = dict(
            RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True),
            kid="evil-1",
            use="sig",
            alg="RS256",
        )

    def sign(self, header: dict, claims: dict) -> str:
        import jwt as pyjwt

        return pyjwt.encode(claims, self.private, algorithm="RS256", headers=header)


def _server_public(env) -> tuple[bytes, bytes]:
    """The IdP's own signing key as its PEM and its JWK text (from the published JWKS)."""
    from cryptography.hazmat.primitives import serialization
    from jwt.algorithms import RSAAlgorithm

    jwks = env.client().get("/jwks").json
    rsa_jwk = next(k for k in jwks["keys"] if k["kty"] == "RSA")
    pem = RSAAlgorithm.from_jwk(rsa_jwk).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, json.dumps(rsa_jwk).encode()


FORGERIES = [
    "alg none",
    "alg None",
    "alg NONE",
    "HS256 with the server's public PEM",
    "HS256 with the server's public JWK",
    "HS256 with the client's public PEM",
    "HS256 with the client's public JWK",
    "jku to the attacker's JWKS",
    "x5u to the attacker's certificate URL",
    "embedded jwk of the attacker",
    "kid path traversal",
    "kid SQL",
    "kid of another client's key",
    "kid of the server's key",
]


def _forge(
    env, attacker: Attacker, recorder: Recorder, case: str, claims: dict, legit_kid: str
) -> str:
    server_pem, server_jwk = _server_public(env)
    client_pem = env.rp_key.as_pem(private=False)
    client_jwk = json.dumps(env.rp_key.as_dict(private=False)).encode()
    if case.startswith("alg "):
        return _by_hand({"alg": case[4:], "kid": legit_kid}, claims)
    if case.startswith("HS256"):
        secret = {
            "server's public PEM": server_pem,
            "server's public JWK": server_jwk,
            "client's public PEM": client_pem,
            "client's public JWK": client_jwk,
        }[case.split(" with the ")[1]]
        return _by_hand({"alg": "HS256", "kid": legit_kid, "typ": "JWT"}, claims, secret)
    header = {
        "jku to the attacker's JWKS": {"jku": f"{recorder.url}/jwks.json", "kid": "evil-1"},
        "x5u to the attacker's certificate URL": {
            "x5u": f"{recorder.url}/cert.pem",
            "kid": "evil-1",
        },
        "embedded jwk of the attacker": {
            "jwk": {k: v for k, v in attacker.jwk.items() if k in ("kty", "n", "e")}
        },
        "kid path traversal": {"kid": "../../../../../../dev/null"},
        "kid SQL": {"kid": "x' UNION SELECT 'secret' --"},
        "kid of another client's key": {"kid": "other-1"},
        "kid of the server's key": {"kid": json.loads(server_jwk)["kid"]},
    }[case]
    return attacker.sign(header, claims)


@pytest.fixture(scope="module")
def jwt_targets(env):
    """A request-object client and a second key client whose key id the attacker borrows."""
    from idp.oidc.clients import client_cache
    from idp.storage.clients import ClientRegistry

    jwks = {"keys": [env.rp_key.as_dict(private=False)]}
    other = RSAKey.generate_key(2048, parameters={"kid": "other-1", "use": "sig"})
    with env.svc.sessions.begin() as db:
        reg = ClientRegistry(db, env.svc.hasher, env.svc.sealer)
        _, env.secrets["jarx"] = reg.create(
            "jarx",
            name="JAR",
            redirect_uris=[RP],
            grant_types=["authorization_code"],
            scope="openid profile email",
            extra={"jwks": jwks},
        )
        reg.create(
            "otherkey",
            name="Other key",
            grant_types=["client_credentials"],
            auth_method="private_key_jwt",
            scope="api",
            extra={"jwks": {"keys": [other.as_dict(private=False)]}},
        )
    client_cache(env.svc).bump()
    attacker = Attacker()
    body = json.dumps({"keys": [attacker.jwk]}).encode()
    with Recorder(body) as recorder:
        yield attacker, recorder


def _now() -> int:
    return int(time.time())


@pytest.mark.parametrize("case", FORGERIES)
def test_forged_client_assertion_is_refused(env, jwt_targets, case):
    attacker, recorder = jwt_targets
    claims = {
        "iss": "jwtc",
        "sub": "jwtc",
        "aud": TOKEN_URL,
        "iat": _now(),
        "exp": _now() + 60,
        "jti": uuid.uuid4().hex,
    }
    assertion = _forge(env, attacker, recorder, case, claims, "rp-1")
    before = State.of(env.svc)
    resp = env.client().post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION,
            "client_assertion": assertion,
        },
    )
    assert resp.status_code == 401 and resp.json["error"] == "invalid_client", resp.json
    assert "access_token" not in resp.json
    assert recorder.hits == []
    _unchanged_but_audit(env, before)


def _unchanged_but_audit(env, before: State, spent: bool = False) -> None:
    """Nothing issued or stored; only refusal rows (audit, never a token.issued) may be new.
    ``spent``: the attacked code was used up by the refused attempt (and only that)."""
    after = State.of(env.svc)
    assert (
        after.users,
        after.clients,
        after.refresh_tokens,
        after.consents,
        after.sso_sessions,
    ) == (before.users, before.clients, before.refresh_tokens, before.consents, before.sso_sessions)
    if spent:
        assert set(after.stored) <= set(before.stored)
        assert len(set(before.stored) - set(after.stored)) <= 1
    else:
        assert after.stored == before.stored
    with env.svc.sessions() as db:
        issued = db.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "token.issued")
        )
        new = (
            db.scalars(
                select(AuditEvent.action)
                .order_by(AuditEvent.id.desc())
                .limit(after.audit - before.audit)
            ).all()
            if after.audit > before.audit
            else []
        )
    assert "token.issued" not in new, (new, issued)


@pytest.mark.parametrize("case", FORGERIES)
def test_forged_request_object_is_refused(env, jwt_targets, case):
    attacker, recorder = jwt_targets
    claims = {
        "iss": "jarx",
        "aud": ISSUER,
        "iat": _now(),
        "nbf": _now(),
        "exp": _now() + 300,
        "jti": uuid.uuid4().hex,
        "client_id": "jarx",
        "response_type": "code",
        "redirect_uri": RP,
        "scope": "openid email",
        "state": "ro-1",
    }
    request_object = _forge(env, attacker, recorder, case, claims, "rp-1")
    c = env.client()
    login(c)
    before = State.of(env.svc)
    resp = c.get(
        "/oauth2/authorize",
        query_string={
            "client_id": "jarx",
            "redirect_uri": RP,
            "response_type": "code",
            "scope": "openid",
            "request": request_object,
        },
    )
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:300]
    got = query(resp.headers["Location"])
    assert resp.headers["Location"].startswith(RP + "?")
    assert got["error"] == "invalid_request_object" and "code" not in got
    assert recorder.hits == []
    _unchanged_but_audit(env, before)


def _signed_in(env):
    """alice signed in at "web": her browser, her tokens, the ID token's claims."""
    import jwt as pyjwt

    c = env.client()
    got = authorize(c, scope="openid profile")
    tokens = token(
        c,
        {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
        auth=("web", env.secrets["web"]),
    ).json
    return c, tokens, pyjwt.decode(tokens["id_token"], options={"verify_signature": False})


@pytest.mark.parametrize("case", FORGERIES)
def test_forged_id_token_hint_is_refused_at_authorize_and_logout(env, jwt_targets, case):
    import jwt as pyjwt

    attacker, recorder = jwt_targets
    c, tokens, claims = _signed_in(env)
    server_kid = pyjwt.get_unverified_header(tokens["id_token"])["kid"]
    hint = _forge(env, attacker, recorder, case, dict(claims, exp=_now() + 600), server_kid)
    before = State.of(env.svc)
    resp = c.get(
        "/oauth2/authorize",
        query_string={
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": RP,
            "scope": "openid",
            "state": "h1",
            "prompt": "none",
            "id_token_hint": hint,
        },
    )
    assert resp.status_code == 302
    got = query(resp.headers["Location"])
    assert got["error"] == "invalid_request" and "code" not in got, got
    resp = c.get(
        "/oauth2/logout",
        query_string={
            "id_token_hint": hint,
            "post_logout_redirect_uri": "https://rp.example.org/bye",
        },
    )
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert recorder.hits == []
    _unchanged_but_audit(env, before)
    # the session lives on: the real ID token still works as the hint
    ok = c.get(
        "/oauth2/authorize",
        query_string={
            "response_type": "code",
            "client_id": "web",
            "redirect_uri": RP,
            "scope": "openid",
            "prompt": "none",
            "id_token_hint": tokens["id_token"],
        },
    )
    assert "code" in query(ok.headers["Location"])


DPOP_FORGERIES = [
    "jku to the attacker's JWKS",
    "x5u to the attacker's certificate URL",
    "kid path traversal",
    "kid SQL",
    "kid of the server's key",
    "alg none",
]


@pytest.mark.parametrize("case", DPOP_FORGERIES)
def test_dpop_proof_without_its_own_jwk_is_refused(env, jwt_targets, case):
    """A DPoP proof carries its key in ``jwk`` (RFC 9449 §4.2); one that names a key any
    other way (jku, x5u, kid) instead is refused and no URL it names is fetched."""
    attacker, recorder = jwt_targets
    claims = {"jti": uuid.uuid4().hex, "htm": "POST", "htu": TOKEN_URL, "iat": _now()}
    forged = _forge(env, attacker, recorder, case, claims, "rp-1")
    header, rest = forged.split(".", 1)
    fields = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    fields["typ"] = "dpop+jwt"
    if case == "alg none":
        proof = _by_hand(
            dict(fields, jwk={k: v for k, v in attacker.jwk.items() if k in ("kty", "n", "e")}),
            claims,
        )
    else:
        proof = attacker.sign({k: v for k, v in fields.items() if k != "alg"}, claims)
    before = State.of(env.svc)
    resp = env.client().post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        headers={
            "DPoP": proof,
            "Authorization": "Basic "
            + base64.b64encode(f"svc:{env.secrets['svc']}".encode()).decode(),
        },
    )
    assert resp.status_code == 400 and resp.json["error"] == "invalid_dpop_proof", resp.json
    assert recorder.hits == []
    _unchanged_but_audit(env, before)


def test_the_forgeries_claims_pass_when_signed_by_the_right_key(env, jwt_targets):
    """The control: the same claims, signed as the client or the DPoP key holder should, are
    taken. The refusals above are the forgery's doing, not the claims'."""
    attacker, recorder = jwt_targets
    claims = {
        "iss": "jwtc",
        "sub": "jwtc",
        "aud": TOKEN_URL,
        "iat": _now(),
        "exp": _now() + 60,
        "jti": uuid.uuid4().hex,
    }
    good = jose_jwt.encode({"alg": "RS256", "kid": "rp-1"}, claims, env.rp_key)
    resp = env.client().post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION,
            "client_assertion": good,
        },
    )
    assert resp.status_code == 200, resp.json
    claims = {
        "iss": "jarx",
        "aud": ISSUER,
        "iat": _now(),
        "nbf": _now(),
        "exp": _now() + 300,
        "jti": uuid.uuid4().hex,
        "client_id": "jarx",
        "response_type": "code",
        "redirect_uri": RP,
        "scope": "openid email",
        "state": "ro-1",
    }
    c = env.client()
    resp = c.get(
        "/oauth2/authorize",
        query_string={
            "client_id": "jarx",
            "redirect_uri": RP,
            "response_type": "code",
            "scope": "openid",
            "request": jose_jwt.encode({"alg": "RS256", "kid": "rp-1"}, claims, env.rp_key),
        },
    )
    assert "code" in follow(c, resp)  # through the login and consent pages
    jwk = {k: v for k, v in attacker.jwk.items() if k in ("kty", "n", "e")}
    proof = attacker.sign(
        {"typ": "dpop+jwt", "jwk": jwk},
        {"jti": uuid.uuid4().hex, "htm": "POST", "htu": TOKEN_URL, "iat": _now()},
    )
    resp = env.client().post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        headers={
            "DPoP": proof,
            "Authorization": "Basic "
            + base64.b64encode(f"svc:{env.secrets['svc']}".encode()).decode(),
        },
    )
    assert resp.status_code == 200 and resp.json["token_type"] == "DPoP", resp.json
    assert recorder.hits == []


# --- SSRF through every URL a client can register ------------------------------------------------
#
# Fetched: jwks_uri (client authentication), sector_identifier_uri (at registration),
# request_uris (at /oauth2/authorize), backchannel_logout_uri (at sign-out). Not fetched by the
# server: logo_uri, policy_uri, tos_uri, client_uri, frontchannel_logout_uri (the browser loads
# them; their rules are tests/oidc/test_client_metadata_validation.py's). The guard
# (idp/delivery/outbound.py) checks every resolved address; the registration check refuses an
# address it can see in the URL, every spelling the resolver would take for one included.

NUMERIC_LOOPBACK = [
    "2130706433",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "0x7f000001",
    "127.1",
    "017700000001",
    "0",
    "127.0.0.1.",
]
NUMERIC_PRIVATE = [
    "167772161",
    "012.0.0.1",
    "0xa9.0xfe.0xa9.0xfe",
    "169.254.43518",
    "0xc0a80001",
    "[::ffff:7f00:1]",
    "[::ffff:a9fe:a9fe]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
]
FETCHED_FIELDS = ["jwks_uri", "sector_identifier_uri", "request_uris", "backchannel_logout_uri"]


@pytest.mark.parametrize("host", NUMERIC_LOOPBACK + NUMERIC_PRIVATE)
def test_numeric_spellings_of_private_addresses_are_refused_in_client_metadata(host):
    from idp.core.client_metadata import uri_problem

    for field in ("jwks_uri", "sector_identifier_uri", "request_uris", "backchannel_logout_uri"):
        assert uri_problem(field, f"https://{host}/x") == (
            "must not point at a loopback or private address"
        ), (field, host)
    assert uri_problem("jwks_uri", "https://0xcafe.example.org/x") is None


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """The default [outbound] settings: https only, no loopback or private destinations."""
    with build_env(tmp_path_factory, {}) as built:
        yield built


def _runtime_hosts(port: int) -> list[str]:
    return [
        f"127.0.0.1:{port}",
        f"2130706433:{port}",
        f"0x7f.1:{port}",
        f"0177.0.0.1:{port}",
        f"[::ffff:127.0.0.1]:{port}",
        f"localhost:{port}",
        f"loopback.attacker.test:{port}",
        "169.254.169.254",
        "10.0.0.1",
        "[fd00::1]",
    ]


@pytest.mark.parametrize("field", FETCHED_FIELDS)
def test_no_registered_url_reaches_a_loopback_listener(strict, monkeypatch, field):
    """Each fetched field of a stored client (written as an old row or while [outbound] was
    open) pointing at a listener on loopback, spelt every way: the fetch is refused, the
    listener sees no connection, no other connection leaves the process, nothing is stored."""
    from idp.core.client_metadata import Policy
    from idp.oidc.clients import client_cache
    from idp.oidc.logout import deliver
    from idp.storage.clients import ClientRegistry

    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection
    attempts: list = []

    def resolve(host, port, *args, **kwargs):
        if host == "loopback.attacker.test":  # a DNS name that resolves to loopback
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port or 443))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    def connect(address, *args, **kwargs):
        attempts.append(address)
        raise ConnectionRefusedError("test: the guard should have refused this")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with Recorder() as recorder:
        monkeypatch.setattr(socket, "create_connection", connect)
        for scheme in ("https", "http"):
            for host in _runtime_hosts(recorder.port):
                uri = f"{scheme}://{host}/x"
                client_id = "ssrf-" + uuid.uuid4().hex[:8]
                meta = {
                    "jwks_uri": {"jwks_uri": uri},
                    "request_uris": {"request_uris": [uri]},
                    "backchannel_logout_uri": {"backchannel_logout_uri": uri},
                    "sector_identifier_uri": {},
                }[field]
                with strict.svc.sessions.begin() as db:
                    ClientRegistry(
                        db, strict.svc.hasher, strict.svc.sealer, Policy(True, True)
                    ).create(
                        client_id,
                        redirect_uris=[RP],
                        scope="openid api",
                        grant_types=["authorization_code", "client_credentials"],
                        auth_method="private_key_jwt"
                        if field == "jwks_uri"
                        else "client_secret_basic",
                        **({"jwks_uri": uri} if field == "jwks_uri" else {}),
                        extra={k: v for k, v in meta.items() if k != "jwks_uri"},
                    )
                client_cache(strict.svc).bump()
                before = State.of(strict.svc)
                if field == "jwks_uri":
                    claims = {
                        "iss": client_id,
                        "sub": client_id,
                        "aud": TOKEN_URL,
                        "iat": _now(),
                        "exp": _now() + 60,
                        "jti": uuid.uuid4().hex,
                    }
                    resp = strict.client().post(
                        "/oauth2/token",
                        data={
                            "grant_type": "client_credentials",
                            "client_assertion_type": ASSERTION,
                            "client_assertion": Attacker().sign({"kid": "evil-1"}, claims),
                        },
                    )
                    assert resp.status_code == 401 and resp.json["error"] == "invalid_client"
                elif field == "request_uris":
                    c = strict.client()
                    resp = c.get(
                        "/oauth2/authorize",
                        query_string={
                            "client_id": client_id,
                            "redirect_uri": RP,
                            "response_type": "code",
                            "scope": "openid",
                            "request_uri": uri,
                        },
                    )
                    location = resp.headers.get("Location", "")
                    assert "code=" not in location, location
                    assert resp.status_code == 400 or "error=invalid_request_uri" in location
                elif field == "backchannel_logout_uri":
                    assert deliver(strict.svc, client_id, uri, "a.logout.token") is False
                else:
                    resp = strict.client().post(
                        "/oauth2/register",
                        headers={"Authorization": f"Bearer {_initial_token(strict)}"},
                        json={
                            "redirect_uris": ["https://sector.example.org/cb"],
                            "sector_identifier_uri": uri,
                        },
                    )
                    assert resp.status_code == 400, (uri, resp.json)
                    assert resp.json["error"] == "invalid_client_metadata"
                    before = dataclass_replace(before, audit=State.of(strict.svc).audit)
                after = State.of(strict.svc)
                assert (after.clients, after.refresh_tokens, after.stored) == (
                    before.clients,
                    before.refresh_tokens,
                    before.stored,
                ), uri
        monkeypatch.setattr(socket, "create_connection", real_connect)
    assert recorder.hits == [] and attempts == []


def _initial_token(env) -> str:
    from oidc_support import initial_access_token

    return initial_access_token(env)


def dataclass_replace(state: State, **changes: Any) -> State:
    from dataclasses import replace

    return replace(state, **changes)


# --- redirect_uri bypasses (RFC 9700 §4.1: exact string matching) --------------------------------
# tests/oidc/test_authorization_endpoint.py already tries case, trailing slash, extra path,
# changed and added query, userinfo, "%2f@", encoded characters, fragments, a look-alike
# subdomain and javascript:. These are the other spellings that fooled other servers.

AUTHORIZE = {"response_type": "code", "client_id": "web", "scope": "openid", "state": "s"}


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://rp.example.org/cb/../cb",
        "https://rp.example.org/x/../cb",
        "https://rp.example.org/cb/..;/evil",
        "https://rp.example.org/cb%2f..%2fevil",
        "https://rp.example.org\\@evil.example/cb",
        "https://rp.example.org\\.evil.example/cb",
        "https://evil.example\\@rp.example.org/cb",
        "https://evil.example#@rp.example.org/cb",
        "https://evil.example?@rp.example.org/cb",
        "https://rp.example.org:443/cb",
        "https://rp.example.org./cb",
        "HTTPS://rp.example.org/cb",
        "https://rp.ex\u0430mple.org/cb",
        "https://rp.xn--exmple-4nf.org/cb",
        "https://rp.example.org/cb%00",
        "https://rp.example.org/cb\x00",
        "https://rp.example.org/cb?x=1&x=2",
        "https://rp.example.org/cb?x=1#",
        "//evil.example/cb",
        "https:rp.example.org/cb",
        "http://127.0.0.1:9999/cb/../evil",
        "http://127.0.0.1.evil.example:9999/cb",
        "http://127.0.0.1:9999@evil.example/cb",
        "http://127.0.0.1:9999\\@evil.example/cb",
        "https://sub.rp.example.org/cb",
    ],
)
def test_redirect_uri_spellings_are_refused_without_a_redirect(env, redirect_uri):
    c = env.client()
    login(c)
    before = State.of(env.svc)
    resp = c.get("/oauth2/authorize", query_string=dict(AUTHORIZE, redirect_uri=redirect_uri))
    assert resp.status_code == 400, (resp.status_code, resp.headers.get("Location"))
    assert "Location" not in resp.headers and "Reference" in resp.get_data(as_text=True)
    _unchanged_but_audit(env, before)


# --- PKCE downgrade (RFC 7636, RFC 9700 §2.1.1 and §4.8) ------------------------------------------


def test_pkce_s256_code_redeemed_the_plain_way_is_refused(env):
    """A code bound to an S256 challenge, redeemed with the challenge itself as the verifier
    (what "plain" would compare) or with a verifier and code_challenge_method=plain: refused,
    nothing issued, and the code is spent (the real client's redemption fails too)."""
    verifier, challenge = pkce()
    for attempt in (
        {"code_verifier": challenge},
        {"code_verifier": challenge, "code_challenge_method": "plain"},
        {"code_verifier": verifier + "x"},
        {},
    ):
        c = env.client()
        got = authorize(
            c,
            client_id="spa",
            redirect_uri="https://spa.example.org/cb",
            code_challenge=challenge,
            code_challenge_method="S256",
        )
        before = State.of(env.svc)
        data = {
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": "https://spa.example.org/cb",
            "client_id": "spa",
        }
        resp = token(c, dict(data, **attempt))
        assert resp.status_code == 400, attempt
        assert resp.json["error"] in ("invalid_grant", "invalid_request"), resp.json
        assert "access_token" not in resp.json
        _unchanged_but_audit(env, before, spent=True)
        late = token(c, dict(data, code_verifier=verifier))
        assert late.status_code == 400 and late.json["error"] == "invalid_grant"


def test_pkce_required_everywhere_refuses_a_confidential_client_without_it(tmp_path_factory):
    """``oidc.require_pkce``: a confidential client that never sent a challenge gets
    invalid_request back at /oauth2/authorize, and no code exists."""
    with build_env(tmp_path_factory, OPEN_OUTBOUND, oidc={"require_pkce": True}) as strict_pkce:
        c = strict_pkce.client()
        login(c)
        before = State.of(strict_pkce.svc)
        resp = c.get("/oauth2/authorize", query_string=dict(AUTHORIZE, redirect_uri=RP))
        got = query(resp.headers["Location"])
        assert got["error"] == "invalid_request" and "code" not in got
        assert "PKCE" in got["error_description"]
        _unchanged_but_audit(strict_pkce, before)
        verifier, challenge = pkce()
        ok = authorize(c, code_challenge=challenge, code_challenge_method="S256")
        assert "code" in ok


# --- mix-up (RFC 9207) ---------------------------------------------------------------------------


def test_every_authorization_response_names_the_issuer(env):
    """The ``iss`` parameter on success and on error, in the query and in form_post, and the
    discovery flag that tells clients to check it."""
    c = env.client()
    doc = c.get("/.well-known/openid-configuration").json
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["issuer"] == ISSUER
    assert authorize(c)["iss"] == ISSUER
    denied = c.get(
        "/oauth2/authorize", query_string=dict(AUTHORIZE, redirect_uri=RP, prompt="bogus")
    )
    assert query(denied.headers["Location"])["iss"] == ISSUER
    posted = c.get(
        "/oauth2/authorize",
        query_string=dict(AUTHORIZE, redirect_uri=RP, response_mode="form_post"),
    )
    assert f'name="iss" value="{ISSUER}"' in posted.get_data(as_text=True)


# --- oversized and duplicated parameters (RFC 6749 §3.1, §3.2) ----------------------------------

BIG = "a" * 20000


@pytest.mark.parametrize(
    "name",
    [
        "scope",
        "state",
        "redirect_uri",
        "client_id",
        "nonce",
        "response_type",
        "code_challenge",
        "claims",
        "login_hint",
        "acr_values",
        "max_age",
        "ui_locales",
        "prompt",
    ],
)
def test_oversized_authorize_parameter_is_a_clear_error(env, name):
    c = env.client()
    login(c)
    before = State.of(env.svc)
    resp = c.get("/oauth2/authorize", query_string={**AUTHORIZE, "redirect_uri": RP, name: BIG})
    assert resp.status_code in (302, 303, 400, 413, 414), resp.status_code
    if resp.status_code in (302, 303):
        location = resp.headers["Location"]
        assert location.startswith(RP + "?"), location
        assert query(location).get("error") and "code" not in query(location)
    _unchanged_but_audit(env, before)


@pytest.mark.parametrize("name", ["redirect_uri", "code", "code_verifier", "grant_type"])
def test_oversized_token_parameter_is_a_clear_error(env, name):
    """Every parameter the code grant reads, 20000 characters long (parameters it does not
    read are ignored, RFC 6749 §3.2; the whole body is capped at 64 KiB: 413)."""
    c = env.client()
    got = authorize(c)
    before = State.of(env.svc)
    data = {
        "grant_type": "authorization_code",
        "code": got["code"],
        "redirect_uri": RP,
        name: "b" * 20000,
    }
    resp = token(c, data, auth=("web", env.secrets["web"]))
    assert resp.status_code in (400, 401, 413), resp.status_code
    assert resp.json["error"] in (
        "invalid_request",
        "invalid_grant",
        "invalid_client",
        "unsupported_grant_type",
        "invalid_scope",
    ), resp.json
    assert "access_token" not in resp.json
    _unchanged_but_audit(env, before, spent=True)


@pytest.mark.parametrize(
    "endpoint,params",
    [
        (
            "/oauth2/authorize",
            [
                "client_id",
                "redirect_uri",
                "response_type",
                "scope",
                "code_challenge",
                "nonce",
                "request",
            ],
        ),
        ("/oauth2/token", ["grant_type", "code", "redirect_uri", "code_verifier", "client_id"]),
        ("/oauth2/par", ["client_id", "redirect_uri", "scope", "state"]),
        ("/oauth2/introspect", ["token"]),
        ("/oauth2/revoke", ["token"]),
    ],
)
def test_a_parameter_sent_twice_is_invalid_request(env, endpoint, params):
    c = env.client()
    login(c)
    for name in params:
        before = State.of(env.svc)
        pairs = [
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", RP),
            ("scope", "openid"),
            ("state", "s"),
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("token", "x"),
        ]
        pairs = [(k, v) for k, v in pairs if k != name] + [(name, "one"), (name, "two")]
        if endpoint == "/oauth2/authorize":
            resp = c.get(endpoint, query_string=MultiDict(pairs))
            assert resp.status_code == 400 and "Location" not in resp.headers, name
        else:
            resp = c.post(
                endpoint,
                data=MultiDict(pairs),
                headers={
                    "Authorization": "Basic "
                    + base64.b64encode(f"web:{env.secrets['web']}".encode()).decode()
                },
            )
            assert resp.status_code == 400, (endpoint, name, resp.status_code)
            assert resp.json["error"] == "invalid_request", (endpoint, name, resp.json)
        _unchanged_but_audit(env, before)


@pytest.fixture(scope="module")
def registration_env(tmp_path_factory):
    """Self-registration open (and its rate limits out of the way of 13 tries)."""
    with build_env(
        tmp_path_factory,
        OPEN_OUTBOUND,
        registration={"enabled": True, "require_email_verification": False},
        rate_limits={"registration_per_address": 1000, "registration_per_account": 1000},
    ) as built:
        yield built


@pytest.mark.parametrize("name", list(LOOKALIKES.values()), ids=list(LOOKALIKES))
def test_lookalike_username_is_refused_at_self_registration(registration_env, name):
    from oidc_support import _csrf

    env = registration_env
    c = env.client()
    before = State.of(env.svc)
    page = c.get("/register")
    assert page.status_code == 200
    resp = c.post(
        "/register",
        data={
            "csrf_token": _csrf(page.get_data(as_text=True)),
            "username": name,
            "email": f"new-{uuid.uuid4().hex[:6]}@example.org",
            "given_name": "New",
            "new_password": "Quite-Long-Passphrase-77",
            "confirm": "Quite-Long-Passphrase-77",
        },
    )
    assert resp.status_code == 400, resp.status_code
    after = State.of(env.svc)
    assert after.users == before.users and after.sso_sessions == before.sso_sessions


def test_self_registration_takes_a_plain_new_name(registration_env):
    """The control: the same form with a name nobody has creates the account."""
    from oidc_support import _csrf

    env = registration_env
    c = env.client()
    before = State.of(env.svc)
    page = c.get("/register")
    resp = c.post(
        "/register",
        data={
            "csrf_token": _csrf(page.get_data(as_text=True)),
            "username": "newcomer",
            "email": "newcomer@example.org",
            "given_name": "New",
            "new_password": "Quite-Long-Passphrase-77",
            "confirm": "Quite-Long-Passphrase-77",
        },
    )
    assert resp.status_code in (200, 302, 303), resp.status_code
    assert len(State.of(env.svc).users) == len(before.users) + 1
