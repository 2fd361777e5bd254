"""Refresh tokens at their edges, through the token endpoint on a frozen clock (RFC 6749 §6,
RFC 9700 §4.14): a use rotates the token, the old one used up and the new one of the same
family; a rotated-out token presented again revokes the whole family, its access tokens
included, and no other family; an offline token dies refresh_idle_days after its last use
(touched in place when the client does not rotate) and refresh_absolute_days after the login
that started the family, however often it was rotated; what the login established (auth_time,
acr, amr, sid) travels with the family. A refused token is not used up.

The mutation tier's ``refresh`` target (tests/mutation_kit.py) runs this file once per
mutant: one app per module, a day of idle time and three of absolute lifetime."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta

import jwt as pyjwt
import pytest
from oidc_support import RP, Env, authorize, build_env, pkce, token
from sqlalchemy import select, update

from idp.clock import FrozenClock
from idp.oidc.server import engine as oidc_engine
from idp.storage.models import AuditEvent
from idp.storage.models_oauth import RefreshToken

DAY = 86400
API, OTHER = "https://api.example.org/", "https://other.example.org/"
SPA_RP = "https://spa.example.org/cb"
IDLE_DAYS, ABSOLUTE_DAYS, ACCESS = 1, 3, 7200


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    return FrozenClock(float(int(time.time())))


@pytest.fixture(scope="module")
def env(tmp_path_factory, clock) -> Iterator[Env]:
    oidc = {
        "refresh_idle_days": IDLE_DAYS,
        "refresh_absolute_days": ABSOLUTE_DAYS,
        "access_token_lifetime": ACCESS,
    }
    with build_env(
        tmp_path_factory, {}, clock=clock, oidc=oidc, session={"idle_minutes": 30, "max_hours": 10}
    ) as built:
        from idp.oidc.clients import client_cache
        from idp.storage.models import Client

        with built.svc.sessions.begin() as db:  # web may ask for two resource servers
            row = db.get(Client, "web")
            row.meta = dict(row.meta, resources=[API, OTHER])
        client_cache(built.svc).bump()
        yield built


_BROWSER: list = []  # [(env, its browser)]


def _browser(env: Env):
    if not _BROWSER or _BROWSER[0][0] is not env:
        _BROWSER[:] = [(env, env.client())]
    return _BROWSER[0][1]


def _login(env: Env, client_id: str = "web", scope: str = "openid offline_access") -> dict:
    """A code flow to the token response. One browser per app: its SSO session is reused
    while it lives (a new grant each time, no password check), a new sign-in once it ended."""
    browser = _browser(env)
    got = authorize(browser, client_id=client_id, scope=scope)
    resp = token(
        browser,
        {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP},
        auth=(client_id, env.secrets[client_id]),
    )
    assert resp.status_code == 200, resp.json
    return resp.json


def _refresh(env: Env, value: str, client_id: str = "web", ip: str | None = None):
    browser = env.client()
    if ip:
        browser.environ_base["REMOTE_ADDR"] = ip
    return token(
        browser,
        {"grant_type": "refresh_token", "refresh_token": value},
        auth=(client_id, env.secrets[client_id]),
    )


def _rows(env: Env) -> dict[str, tuple]:
    with env.svc.sessions() as db:
        return {
            r.token_hash: (r.grant_id, r.used_at, r.revoked, r.last_used_at)
            for r in db.scalars(select(RefreshToken))
        }


def _family(env: Env, value: str) -> str:
    with env.svc.sessions() as db:
        return db.get(RefreshToken, oidc_engine(env.svc).hash(value)).grant_id


def _refused(env: Env, value: str, client_id: str = "web", ip: str | None = None) -> None:
    """The token is refused (invalid_grant) and no refresh-token row changed."""
    before = _rows(env)
    resp = _refresh(env, value, client_id, ip)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant", resp.json
    assert _rows(env) == before


def _claims(jwt_value: str) -> dict:
    return pyjwt.decode(jwt_value, options={"verify_signature": False})


def _userinfo(env: Env, access: str) -> int:
    return (
        env.client()
        .get("/oauth2/userinfo", headers={"Authorization": f"Bearer {access}"})
        .status_code
    )


# --- rotation and reuse ------------------------------------------------------------------------


def test_a_use_rotates_the_token_within_its_family(env, clock):
    first = _login(env)
    clock.advance(60)
    resp = _refresh(env, first["refresh_token"])
    assert resp.status_code == 200
    second = resp.json["refresh_token"]
    assert second != first["refresh_token"]
    assert _family(env, second) == _family(env, first["refresh_token"])
    # The new one works, and so does its successor: each use rotates again.
    third = _refresh(env, second)
    assert third.status_code == 200 and third.json["refresh_token"] not in (
        first["refresh_token"],
        second,
    )


def test_a_reused_token_revokes_its_family_and_only_that_family(env, clock, caplog):
    other = _login(env)  # the same user and client, another login: another family
    first = _login(env)
    second = _refresh(env, first["refresh_token"]).json
    before = _rows(env)
    with caplog.at_level(logging.WARNING, logger="idp.oidc"):
        reuse = _refresh(env, first["refresh_token"], ip="198.51.100.7")
    assert reuse.status_code == 400 and reuse.json["error"] == "invalid_grant"
    said = [
        (r.getMessage(), getattr(r, "client_id", None))
        for r in caplog.records
        if r.name == "idp.oidc" and r.levelno == logging.WARNING
    ]
    assert said == [("refresh token reused; revoking its family", "web")]
    family = _family(env, first["refresh_token"])
    after = _rows(env)
    assert {h for h, row in after.items() if row[2]} - {
        h for h, row in before.items() if row[2]
    } == {h for h, row in after.items() if row[0] == family}  # exactly the family, revoked
    _refused(env, second["refresh_token"], ip="198.51.100.8")
    assert [(e.details["kind"], e.ip) for e in _replay_events(env, family)] == [
        ("rotated", "198.51.100.7"),
        ("revoked", "198.51.100.8"),
    ]
    # Its access tokens are refused for as long as they would live (access_token_lifetime
    # 7200 s here, longer than the one-hour floor of the revocation marker).
    clock.advance(ACCESS - 1)
    assert _userinfo(env, second["access_token"]) == 401
    # The other family is untouched: its access token lived as long, its refresh token works.
    assert _refresh(env, other["refresh_token"]).status_code == 200


def _replay_events(env: Env, family: str) -> list[AuditEvent]:
    """``security.refresh_token_replay`` events of a family (docs/risk.md), oldest first."""
    with env.svc.sessions() as db:
        rows = list(
            db.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "security.refresh_token_replay")
                .order_by(AuditEvent.id)
            )
        )
    return [r for r in rows if (r.details or {}).get("grant") == family]


def _revoked_rows(env: Env, family: str) -> list[AuditEvent]:
    with env.svc.sessions() as db:
        rows = list(db.scalars(select(AuditEvent).where(AuditEvent.action == "token.revoked")))
    return [r for r in rows if (r.details or {}).get("grant") == family]


def test_a_reuse_is_audited_as_a_revocation_of_the_family_by_its_client(env):
    first = _login(env)
    _refresh(env, first["refresh_token"])
    family = _family(env, first["refresh_token"])
    attacker = env.client()
    attacker.environ_base["REMOTE_ADDR"] = "198.51.100.23"
    reuse = token(
        attacker,
        {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=("web", env.secrets["web"]),
    )
    assert reuse.status_code == 400
    rows = _revoked_rows(env, family)
    assert [(r.details["reason"], r.actor, r.ip) for r in rows] == [
        ("refresh_token_reuse", "client:web", "198.51.100.23")
    ]


def test_offline_access_ended_by_the_user_is_audited_as_theirs(env):
    from idp.oidc.offline import revoke_offline_access
    from idp.storage.models import User

    first = _login(env)
    family = _family(env, first["refresh_token"])
    with env.svc.sessions() as db:
        user = db.scalar(select(User).where(User.username == "alice"))
        user_id, uuid = user.id, user.uuid
    assert revoke_offline_access(env.svc, user_id, uuid, "web", ip="192.0.2.44") >= 1
    _refused(env, first["refresh_token"])
    rows = _revoked_rows(env, family)
    assert [(r.actor, r.target, r.ip) for r in rows] == [(uuid, uuid, "192.0.2.44")]


def test_of_two_uses_at_once_the_one_that_comes_second_is_a_reuse(env, monkeypatch):
    """Two requests read the same unused token; the other one rotates it first (simulated by
    using it up between this request's read and its update). This one is then a reuse: the
    atomic update finds the token used, the request is refused and the family revoked."""
    from idp.storage.db import utcnow

    first = _login(env)
    engine = oidc_engine(env.svc)
    rotates = engine.rotates

    def used_meanwhile(client):
        with env.svc.sessions.begin() as db:
            db.execute(
                update(RefreshToken)
                .where(RefreshToken.token_hash == engine.hash(first["refresh_token"]))
                .values(used_at=utcnow())
            )
        return rotates(client)

    monkeypatch.setattr(engine, "rotates", used_meanwhile)
    resp = _refresh(env, first["refresh_token"])
    monkeypatch.undo()
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
    family = _family(env, first["refresh_token"])
    assert all(row[2] for row in _rows(env).values() if row[0] == family)
    assert [e.details["kind"] for e in _replay_events(env, family)] == ["rotated"]


def test_a_token_of_another_client_or_too_long_is_refused_unused(env):
    first = _login(env)
    _refused(env, first["refresh_token"], "web2")
    _refused(env, first["refresh_token"] + "x")
    _refused(env, "x" * 201)
    assert _refresh(env, first["refresh_token"]).status_code == 200  # not used up above


def test_a_token_issued_into_a_family_revoked_meanwhile_is_dead(env, clock):
    """Two parallel redemptions of one code or token: the loser revokes the family while the
    winner saves its new token; the winner's token must not outlive the revocation."""
    from idp.oidc.clients import client_cache

    first = _login(env)
    family = _family(env, first["refresh_token"])
    engine = oidc_engine(env.svc)
    with env.svc.sessions() as db:
        row = db.get(RefreshToken, engine.hash(first["refresh_token"]))
        user_id, sid = row.user_id, row.sid
    engine.revoke_grant(family)
    client = client_cache(env.svc).get("web")
    late = engine.issue(
        client,
        engine.load_subject(user_id),
        "openid offline_access",
        {"grant_id": family, "user_id": user_id, "sid": sid},
        include_refresh_token=True,
    )
    _refused(env, late["refresh_token"])
    # Its own row is revoked: it stays refused after the revocation marker is gone
    # (max(access_token_lifetime, 3600) s).
    clock.advance(ACCESS + 1)
    _refused(env, late["refresh_token"])


def test_a_token_of_an_account_that_may_not_be_used_is_refused_unused(env, caplog):
    from idp.storage.models import User

    first = _login(env)
    with env.svc.sessions.begin() as db:
        db.scalar(select(User).where(User.username == "alice")).status = "locked"
    try:
        with caplog.at_level(logging.INFO, logger="idp.oidc"):
            _refused(env, first["refresh_token"])
        said = [
            (r.getMessage(), getattr(r, "client_id", None))
            for r in caplog.records
            if r.name == "idp.oidc"
        ]
        assert said == [("refresh refused: the account may not be used", "web")]
    finally:
        with env.svc.sessions.begin() as db:
            db.scalar(select(User).where(User.username == "alice")).status = "active"
    assert _refresh(env, first["refresh_token"]).status_code == 200  # kept for when it may


def test_a_revocation_cut_short_after_its_marker_still_ends_the_family(env, monkeypatch):
    """The database fails after the family's revocation marker was written (revoke_grants
    writes it first): its refresh tokens are refused while the marker lives, though their
    rows were never marked revoked."""
    first = _login(env)
    family = _family(env, first["refresh_token"])
    sessions = env.svc.sessions

    def failing_begin():
        raise RuntimeError("database gone")

    monkeypatch.setattr(sessions, "begin", failing_begin)
    with pytest.raises(RuntimeError):
        oidc_engine(env.svc).revoke_grant(family)
    monkeypatch.undo()
    rows = _rows(env)
    assert not any(r[2] for r in rows.values() if r[0] == family)  # no row says revoked
    _refused(env, first["refresh_token"])


# --- lifetimes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("after", "good"), [(IDLE_DAYS * DAY - 1, True), (IDLE_DAYS * DAY, False)])
def test_an_offline_token_dies_refresh_idle_days_after_its_last_use(env, clock, after, good):
    first = _login(env)
    clock.advance(60)
    second = _refresh(env, first["refresh_token"]).json["refresh_token"]
    clock.advance(after)  # counted from the rotation, not from the login
    if good:
        assert _refresh(env, second).status_code == 200
    else:
        _refused(env, second)


def test_a_token_that_does_not_rotate_is_kept_alive_by_each_use(env, clock):
    first = _login(env, "fapi")
    value = first["refresh_token"]
    for _ in range(2):
        clock.advance(IDLE_DAYS * DAY - 1)  # twice: longer than the idle time since the login
        resp = _refresh(env, value, "fapi")
        assert resp.status_code == 200
        assert resp.json.get("refresh_token", value) == value  # the same token, still usable
    clock.advance(IDLE_DAYS * DAY)
    _refused(env, value, "fapi")


def test_the_absolute_lifetime_holds_however_often_the_family_rotates(env, clock):
    value = _login(env)["refresh_token"]
    start = clock.now()
    while clock.now() + IDLE_DAYS * DAY - 1 < start + ABSOLUTE_DAYS * DAY:
        clock.advance(IDLE_DAYS * DAY - 1)
        resp = _refresh(env, value)
        assert resp.status_code == 200, clock.now() - start
        value = resp.json["refresh_token"]
    clock.advance(start + ABSOLUTE_DAYS * DAY - 1 - clock.now())
    value = _refresh(env, value).json["refresh_token"]  # a second before the end: still good
    clock.advance(1)  # the family's end, to the second
    _refused(env, value)


def test_an_online_token_dies_with_its_sso_session(env, clock):
    first = _login(env, scope="openid")
    clock.advance(30 * 60 - 1)
    second = _refresh(env, first["refresh_token"])
    assert second.status_code == 200
    clock.advance(10 * 3600)  # past the session's longest life
    _refused(env, second.json["refresh_token"])


def test_an_offline_token_outlives_the_sso_session(env, clock):
    first = _login(env)
    clock.advance(12 * 3600)  # the session (10 h at most) has ended
    assert _refresh(env, first["refresh_token"]).status_code == 200


# --- what the family carries -------------------------------------------------------------------


def test_a_public_clients_refresh_token_stays_bound_to_its_dpop_key(env):
    """RFC 9449 §5: a public client's refresh token is bound to the DPoP key of the code
    redemption, and its successor to the same key."""
    from dpop_client import DPoPKey

    key, thief = DPoPKey(), DPoPKey()

    def dpop(proof_key, data):
        url = f"{env.svc.settings.issuer}/oauth2/token"
        proof = proof_key.proof("POST", url, iat=env.svc.clock.now())
        return env.client().post(
            "/oauth2/token", data={**data, "client_id": "spa"}, headers={"DPoP": proof}
        )

    verifier, challenge = pkce()
    got = authorize(
        _browser(env),
        client_id="spa",
        redirect_uri=SPA_RP,
        scope="openid offline_access",
        code_challenge=challenge,
        code_challenge_method="S256",
        dpop_jkt=key.jkt,
    )
    first = dpop(
        key,
        {
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": SPA_RP,
            "code_verifier": verifier,
        },
    )
    assert first.status_code == 200, first.json
    before = _rows(env)
    stolen = dpop(
        thief, {"grant_type": "refresh_token", "refresh_token": first.json["refresh_token"]}
    )
    assert stolen.status_code == 400 and stolen.json["error"] == "invalid_grant"
    assert _rows(env) == before  # refused, not used up
    second = dpop(
        key, {"grant_type": "refresh_token", "refresh_token": first.json["refresh_token"]}
    )
    assert second.status_code == 200, second.json
    before = _rows(env)
    stolen = dpop(
        thief, {"grant_type": "refresh_token", "refresh_token": second.json["refresh_token"]}
    )
    assert stolen.status_code == 400 and stolen.json["error"] == "invalid_grant"
    assert _rows(env) == before


def test_offline_access_shows_when_it_was_granted_and_last_used(env, clock):
    from idp.oidc.offline import offline_access, revoke_offline_access
    from idp.storage.models import User

    with env.svc.sessions() as db:
        user = db.scalar(select(User).where(User.username == "alice"))
        user_id, uuid = user.id, user.uuid
    revoke_offline_access(env.svc, user_id, uuid, "web")  # the families of earlier tests
    granted = clock.utcnow().replace(microsecond=0)
    first = _login(env)
    clock.advance(600)
    assert _refresh(env, first["refresh_token"]).status_code == 200
    held = {a.client_id: a for a in offline_access(env.svc, user_id)}
    assert (held["web"].granted_at, held["web"].last_used_at) == (
        granted,
        granted + timedelta(seconds=600),
    )


def test_a_family_keeps_the_resources_of_its_grant(env):
    """RFC 8707: a refresh may narrow one access token to one of the granted resources; the
    family still holds the whole grant."""
    got = authorize(_browser(env), scope="openid offline_access", resource=[API, OTHER])
    web = ("web", env.secrets["web"])
    code = {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": RP}
    first = token(env.client(), code, auth=web).json
    assert _claims(first["access_token"])["aud"] == [API, OTHER]
    value = first["refresh_token"]
    for asked, aud in ((API, API), (OTHER, OTHER), (None, [API, OTHER])):
        data = {"grant_type": "refresh_token", "refresh_token": value}
        if asked:
            data["resource"] = asked
        resp = token(env.client(), data, auth=web)
        assert resp.status_code == 200, resp.json
        assert _claims(resp.json["access_token"])["aud"] == aud
        value = resp.json["refresh_token"]


def test_a_refreshed_id_token_keeps_what_the_login_established(env, clock):
    first = _login(env)
    clock.advance(120)
    second = _refresh(env, first["refresh_token"]).json
    before, after = _claims(first["id_token"]), _claims(second["id_token"])
    for claim in ("auth_time", "acr", "amr", "sid", "sub"):
        assert after.get(claim) == before.get(claim), claim
    assert before.get("auth_time") and before.get("sid") and before.get("amr")
    assert _claims(second["access_token"])["scope"] == "openid offline_access"


def test_the_first_token_of_a_family_is_audited_with_it(env):
    first = _login(env)
    family = _family(env, first["refresh_token"])
    online = _family(env, _login(env, scope="openid")["refresh_token"])
    with env.svc.sessions() as db:
        rows = list(db.scalars(select(AuditEvent).where(AuditEvent.action == "token.issued")))
    details = {r.details.get("grant"): r.details for r in rows if r.details}
    assert (details[family]["refresh_token"], details[family]["offline"]) == (True, True)
    assert (details[online]["refresh_token"], details[online]["offline"]) == (True, False)
