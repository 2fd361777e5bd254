"""Rate limits ([rate_limits], idp.core.ratelimit / idp.storage.ratelimit / idp.web.ratelimit) on
every endpoint that takes a credential or sends a message: exact limits (N allowed, N+1 refused
with 429 and the right Retry-After), the answer each surface's caller reads, the window freeing
one second either side of its end on a frozen clock, nothing else changed by a refusal, the
per-account limit reached from several addresses and the per-address limit across several
accounts, unknown accounts limited exactly like known ones, and the counts shared by every app
on one store (SQL, Redis). The served two-worker test is test_rate_limits_served.py."""

from __future__ import annotations

import base64
import secrets

import pytest
from login_kit import company_with_control_word, csrf, make_user, outbox
from mfa_kit import add_channel, password_then_step, step_page
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from idp.clock import FrozenClock
from idp.core.ratelimit import Rule, address_subject, judge
from idp.errors import ConfigError
from idp.manage import Actor, transaction
from idp.manage import clients as manage_clients
from idp.storage.models import AuditEvent, KVEntry, User

T0 = 1_800_000_000.0  # a multiple of every window below: windows start here
START = T0 + 100  # the tests begin 100 s into their windows
A1, A2, A3, A4 = "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"


@pytest.fixture
def clock():
    return FrozenClock(START)


def _from(ip: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": ip}}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _client(app, client_id: str) -> str:
    with transaction(app.extensions["idp"], Actor.operator("test")) as ctx:
        _, secret = manage_clients.create(
            ctx, client_id, name=client_id, grant_types=["client_credentials", "refresh_token"],
            scope="scim admin", roles=["Administrator"],
        )
    return secret


def _cc(client, client_id: str, secret: str, ip: str = A1, scope: str = "scim"):
    return client.post(
        "/oauth2/token", data={"grant_type": "client_credentials", "scope": scope},
        headers=_basic(client_id, secret), **_from(ip),
    )


def _store(svc) -> dict[str, tuple]:
    with svc.sessions() as db:
        return {r.key: (r.value, r.counter) for r in db.scalars(select(KVEntry))}


def _changed_keys(before: dict, after: dict) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def _audit_count(svc) -> int:
    with svc.sessions() as db:
        return db.scalar(select(func.count()).select_from(AuditEvent))


def _refused(resp, retry_after: int) -> None:
    assert resp.status_code == 429, resp.get_data(as_text=True)
    assert resp.headers["Retry-After"] == str(retry_after)


# --- the policy ---------------------------------------------------------------------------------


def test_windows_are_aligned_and_retry_after_is_the_rest_of_the_window():
    rule = Rule("reset", 3, 2, 300)
    assert rule.window_end(T0) == T0 + 300 and rule.window_end(T0 + 299.5) == T0 + 300
    assert rule.retry_after(T0 + 100) == 200 and rule.retry_after(T0 + 299.5) == 1
    assert rule.key("address", "x", T0 + 1) == rule.key("address", "x", T0 + 299)
    assert rule.key("address", "x", T0 + 299) != rule.key("address", "x", T0 + 300)
    # A send counts itself (the limit-th is allowed); failures count the ones before.
    assert judge(rule, {"account": 2}, T0, after_count=True) is None
    assert judge(rule, {"account": 3}, T0, after_count=True).scope == "account"
    assert judge(rule, {"address": 2}, T0, after_count=False) is None
    assert judge(rule, {"address": 3}, T0, after_count=False).retry_after == 300
    assert judge(Rule("x", 0, 0, 60), {"address": 10**6}, T0, after_count=True) is None


def test_ipv6_addresses_count_by_their_64():
    assert address_subject("2001:db8:1:2:aaaa::1") == address_subject("2001:db8:1:2:bbbb::9")
    assert address_subject("2001:db8:1:3::1") != address_subject("2001:db8:1:2::1")
    assert address_subject("192.0.2.7") == "192.0.2.7"
    assert address_subject(None) is None and address_subject("not-an-ip") is None


@pytest.mark.parametrize(
    "bad", [{"reset_per_account": -1}, {"bearer_window_seconds": 0}]
)
def test_bad_settings_are_refused(make_app, bad):
    with pytest.raises(ConfigError, match="rate_limits"):
        make_app(rate_limits=bad)


# --- token endpoint and the other client-authenticating endpoints -------------------------------


def test_token_endpoint_failed_client_auth_per_client_exact_and_window_frees(make_app, clock):
    app = make_app(clock=clock, rate_limits={"client_auth_per_client": 3,
                                             "client_auth_per_address": 100})
    svc, client = app.extensions["idp"], app.test_client()
    secret = _client(app, "svc-a")
    # Three wrong secrets from three addresses: each the usual invalid_client.
    for ip in (A1, A2, A3):
        resp = _cc(client, "svc-a", "wrong", ip)
        assert resp.status_code == 401 and resp.json["error"] == "invalid_client"
    before, audits = _store(svc), _audit_count(svc)
    # The fourth request, from a fresh address and even with the right secret, is refused.
    resp = _cc(client, "svc-a", secret, A4)
    _refused(resp, 200)
    assert resp.json["error"] == "too_many_requests" and "access_token" not in resp.json
    assert resp.json["reference"] and resp.headers["Cache-Control"] == "no-store"
    assert _store(svc) == before and _audit_count(svc) == audits  # nothing changed, no token
    # Another client from the same addresses is not touched.
    other = _client(app, "svc-b")
    assert _cc(client, "svc-b", other, A1).status_code == 200
    clock.advance(199)  # one second before the window ends
    _refused(_cc(client, "svc-a", secret, A4), 1)
    clock.advance(1)  # the window ends
    assert _cc(client, "svc-a", secret, A4).status_code == 200


def test_token_endpoint_failures_per_address_across_clients(make_app, clock):
    app = make_app(clock=clock, rate_limits={"client_auth_per_address": 4,
                                             "client_auth_per_client": 100})
    client = app.test_client()
    secret = _client(app, "svc-a")
    # Four clients that do not exist and one that does, each with a wrong secret, one address.
    for client_id in ("ghost-1", "ghost-2", "ghost-3", "svc-a"):
        assert _cc(client, client_id, "wrong", A1).status_code == 401
    _refused(_cc(client, "svc-a", secret, A1), 200)
    _refused(_cc(client, "ghost-9", "wrong", A1), 200)  # unknown ones alike
    assert _cc(client, "svc-a", secret, A2).status_code == 200  # another address is served
    clock.advance(200)
    assert _cc(client, "svc-a", secret, A1).status_code == 200


def test_failed_grants_are_not_counted(make_app, clock):
    """A relying party's server refreshing for many people meets expired and revoked refresh
    tokens every day; grants are 256-bit values, nothing to guess: never refused for them."""
    app = make_app(clock=clock, rate_limits={"client_auth_per_address": 2,
                                             "client_auth_per_client": 2})
    client = app.test_client()
    secret = _client(app, "svc-a")
    bad_grant = {"grant_type": "refresh_token", "refresh_token": "revoked-or-expired"}
    for _ in range(5):
        resp = client.post("/oauth2/token", data=bad_grant, headers=_basic("svc-a", secret),
                           **_from(A1))
        assert resp.status_code == 400 and resp.json["error"] == "invalid_grant"
    assert _cc(client, "svc-a", secret, A1).status_code == 200


@pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke",
                                  "/oauth2/device_authorization", "/oauth2/par"])
def test_client_auth_failures_are_shared_by_every_client_endpoint(make_app, clock, path):
    app = make_app(clock=clock, rate_limits={"client_auth_per_client": 2})
    client = app.test_client()
    secret = _client(app, "svc-a")
    data = {"scope": "openid"} if "device" in path else {"token": "x"}
    if path.endswith("/par"):
        data = {"response_type": "code", "client_id": "svc-a", "scope": "openid"}
    for _ in range(2):
        resp = client.post(path, data=data, headers=_basic("svc-a", "wrong"))
        assert resp.status_code == 401 and resp.json["error"] == "invalid_client"
    resp = client.post(path, data=data, headers=_basic("svc-a", secret))
    _refused(resp, 200)
    assert resp.json["error"] == "too_many_requests"
    _refused(_cc(client, "svc-a", secret, A2), 200)  # the token endpoint counts them too


# --- admin API and SCIM: refused Bearer tokens ---------------------------------------------------


def _token(app, scope: str) -> str:
    resp = _cc(app.test_client(), "svc-a", _client(app, "svc-a"), "192.0.2.250", scope)
    assert resp.status_code == 200, resp.json
    return resp.json["access_token"]


@pytest.mark.parametrize("surface", ["api", "scim"])
def test_bad_bearer_tokens_per_address(make_app, clock, surface):
    app = make_app(clock=clock, rate_limits={"bearer_per_address": 3})
    svc, client = app.extensions["idp"], app.test_client()
    good = _token(app, "admin" if surface == "api" else "scim")
    path = "/api/v1/users" if surface == "api" else "/scim/v2/Users"

    def call(token: str | None, ip: str = A1):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.get(path, headers=headers, **_from(ip))

    for _ in range(5):  # no token at all (a probe): not counted
        assert call(None).status_code == 401
    for n in range(3):
        assert call(f"forged-{n}").status_code == 401
    before = _store(svc)
    resp = call(good)  # the fourth try from A1, with a good token, is refused
    _refused(resp, 200)
    if surface == "api":
        assert resp.content_type == "application/problem+json"
        assert resp.json["status"] == 429 and resp.json["type"].endswith("/too-many-requests")
        assert resp.json["reference"]
    else:
        assert resp.content_type == "application/scim+json"
        assert resp.json["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert resp.json["status"] == "429"
    assert _store(svc) == before
    assert call(good, A2).status_code == 200  # another address is served
    clock.advance(199)
    _refused(call(good), 1)
    clock.advance(1)
    assert call(good).status_code == 200


# --- password reset, magic link, registration: every send counts -------------------------------


def _post(client, url: str, data: dict, ip: str = A1):
    page = client.get(url, **_from(ip)).get_data(as_text=True)
    return client.post(url, data={"csrf_token": csrf(page), **data}, **_from(ip))


def _main(resp) -> str:
    return resp.get_data(as_text=True).split("<main")[1].split("</main>")[0]


def test_reset_per_account_exact_known_and_unknown_alike(make_app, clock):
    app = make_app(clock=clock, rate_limits={"reset_per_account": 2, "reset_per_address": 100})
    svc, client = app.extensions["idp"], app.test_client()
    make_user(svc, "ann")
    for address in ("ann@example.org", "ghost@example.org"):
        for ip in (A1, A2):  # the per-account limit is reached from two addresses
            assert _post(client, "/password/reset", {"email": address}, ip).status_code == 200
    assert len(outbox(svc)) == 2  # ann's two mails; the unknown address got none
    before, audits = _store(svc), _audit_count(svc)
    known = _post(client, "/password/reset", {"email": "ann@example.org"}, A3)
    unknown = _post(client, "/password/reset", {"email": "ghost@example.org"}, A3)
    for resp in (known, unknown):
        _refused(resp, 3500)
        assert "text/html" in resp.content_type and "Reference:" in resp.get_data(as_text=True)
        assert "try again in 59 minutes" in resp.get_data(as_text=True)
    # The same page (but for its reference id) whether or not the account exists.
    assert _main(known).split("Reference:")[0] == _main(unknown).split("Reference:")[0]
    assert len(outbox(svc)) == 2 and _audit_count(svc) == audits
    # Only the counters moved: no token, no other store entry.
    assert all(k.startswith("rl:reset:") for k in _changed_keys(before, _store(svc)))
    # The typed form does not matter: case and spaces count as the same account.
    _refused(_post(client, "/password/reset", {"email": " ANN@example.org"}, A4), 3500)
    clock.advance(3499)
    _refused(_post(client, "/password/reset", {"email": "ann@example.org"}, A4), 1)
    clock.advance(1)
    assert _post(client, "/password/reset", {"email": "ann@example.org"}, A4).status_code == 200
    assert len(outbox(svc)) == 3


def test_reset_per_address_across_accounts(make_app, clock):
    app = make_app(clock=clock, rate_limits={"reset_per_address": 3, "reset_per_account": 100})
    svc, client = app.extensions["idp"], app.test_client()
    for name in ("ann", "bob", "cy"):
        make_user(svc, name)
        assert _post(client, "/password/reset", {"email": f"{name}@example.org"}).status_code == 200
    make_user(svc, "dee")
    _refused(_post(client, "/password/reset", {"email": "dee@example.org"}), 3500)
    assert _post(client, "/password/reset", {"email": "dee@example.org"}, A2).status_code == 200
    assert sorted(m["To"] for m in outbox(svc)) == [
        "ann@example.org", "bob@example.org", "cy@example.org", "dee@example.org"
    ]


def test_magic_link_per_account_and_per_address(make_app, clock):
    app = make_app(clock=clock, rate_limits={"magic_link_per_account": 1,
                                             "magic_link_per_address": 2})
    svc, client = app.extensions["idp"], app.test_client()
    cid = company_with_control_word(app)
    make_user(svc, "newbie", password=None, company_id=cid)

    def ask(address: str, ip: str):
        return _post(client, "/login/first",
                     {"email": address, "control_word": "Blue Harbour"}, ip)

    assert ask("newbie@example.org", A1).status_code == 200
    audits = _audit_count(svc)
    _refused(ask("newbie@example.org", A2), 3500)  # per account, from another address
    assert ask("ghost@example.org", A1).status_code == 200
    _refused(ask("other@example.org", A1), 3500)  # per address: A1's third request
    assert len(outbox(svc)) == 1 and _audit_count(svc) == audits + 1  # the ghost's row only
    clock.advance(3500)
    assert ask("newbie@example.org", A2).status_code == 200
    assert len(outbox(svc)) == 2


def test_registration_per_account_and_nothing_created_on_refusal(make_app, clock):
    app = make_app(clock=clock, registration={"enabled": True},
                   rate_limits={"registration_per_account": 1, "registration_per_address": 100})
    svc, client = app.extensions["idp"], app.test_client()

    def register(username: str, address: str, ip: str):
        return _post(client, "/register", {
            "username": username, "email": address, "given_name": "", "family_name": "",
            "new_password": "Correct-Horse-Battery-9", "confirm": "Correct-Horse-Battery-9",
        }, ip)

    # The first submission counts even when it fails (the name is taken below): each counts.
    make_user(svc, "taken")
    assert register("taken", "new@example.org", A1).status_code == 400
    with svc.sessions() as db:
        users = db.scalar(select(func.count()).select_from(User))
    _refused(register("newbie", "new@example.org", A2), 3500)
    with svc.sessions() as db:
        assert db.scalar(select(func.count()).select_from(User)) == users
    clock.advance(3500)
    assert register("newbie", "new@example.org", A2).status_code == 200


# --- e-mail / SMS sign-in codes ([mfa] max_sends per account, mfa_send_per_address) -------------


def _signed_in_to_code_step(app, username: str, ip: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    password_then_step(client, username)
    return client


def test_mfa_code_sends_per_address_across_accounts_and_per_account(make_app, clock):
    app = make_app(clock=clock, mfa={"max_sends": 2}, rate_limits={"mfa_send_per_address": 3})
    svc = app.extensions["idp"]
    for name in ("ann", "bob", "cy", "dee"):
        add_channel(svc, make_user(svc, name), "email", f"{name}@example.org")
    # Per address: three people behind A1 get their codes, the fourth does not.
    for name in ("ann", "bob", "cy"):
        assert "We sent a code" in step_page(_signed_in_to_code_step(app, name, A1))
    dee = _signed_in_to_code_step(app, "dee", A1)
    before = _store(svc)
    assert "Too many codes were sent" in step_page(dee)
    assert len(outbox(svc)) == 3
    assert all(k.startswith("rl:mfa_send:") for k in _changed_keys(before, _store(svc)))
    assert "We sent a code" in step_page(_signed_in_to_code_step(app, "dee", A2))
    # Per account, from several addresses: ann's second code from A3, no third from A4.
    assert "We sent a code" in step_page(_signed_in_to_code_step(app, "ann", A3))
    assert "Too many codes were sent" in step_page(_signed_in_to_code_step(app, "ann", A4))
    assert len(outbox(svc)) == 5
    clock.advance(799)  # the 900 s window began 100 s before the test
    assert "Too many codes were sent" in step_page(_signed_in_to_code_step(app, "ann", A4))
    clock.advance(1)
    assert "We sent a code" in step_page(_signed_in_to_code_step(app, "ann", A4))


# --- metrics, switching off ----------------------------------------------------------------------


def test_refusals_are_counted_by_rule(make_app, clock):
    app = make_app(clock=clock, rate_limits={"bearer_per_address": 1})
    client = app.test_client()

    def refused_total() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "idp_rate_limited_total" and s.labels == {"rule": "bearer"}:
                    return s.value
        return 0.0

    before = refused_total()
    headers = {"Authorization": "Bearer forged"}
    assert client.get("/scim/v2/Users", headers=headers).status_code == 401
    for _ in range(2):
        assert client.get("/scim/v2/Users", headers=headers).status_code == 429
    assert refused_total() - before == 2


def test_switched_off(make_app, clock):
    app = make_app(clock=clock, rate_limits={"enabled": False, "reset_per_account": 1})
    client = app.test_client()
    for _ in range(3):
        assert _post(client, "/password/reset", {"email": "x@example.org"}).status_code == 200


# --- shared by every app on one store ------------------------------------------------------------


def _two_nodes(make_app, clock, **extra):
    limits = {"reset_per_account": 3, "reset_per_address": 100}
    first = make_app(clock=clock, rate_limits=limits, **extra)
    second = make_app(clock=clock, rate_limits=limits, **extra)
    return first, second


def _shared_count(first, second) -> None:
    address = f"n-{secrets.token_hex(4)}@example.org"
    for app in (first, second, first):
        resp = _post(app.test_client(), "/password/reset", {"email": address})
        assert resp.status_code == 200
    _refused(_post(second.test_client(), "/password/reset", {"email": address}), 3500)
    _refused(_post(first.test_client(), "/password/reset", {"email": address}), 3500)


def test_two_apps_on_one_database_share_the_counts(make_app, clock):
    _shared_count(*_two_nodes(make_app, clock))


@pytest.mark.redis
def test_two_apps_on_one_redis_share_the_counts(make_app, clock, redis_url):
    # A prefix of its own: counters of earlier runs on the same server never count here.
    prefix = f"test-{secrets.token_hex(4)}:"
    first, second = _two_nodes(make_app, clock, redis_url=redis_url,
                               store={"redis_prefix": prefix})
    assert type(first.extensions["idp"].store).__name__ == "RedisStore"
    _shared_count(first, second)


def test_an_erasure_drops_the_persons_counters(make_app, clock):
    from idp.manage import gdpr

    app = make_app(clock=clock, rate_limits={"reset_per_account": 1})
    svc, client = app.extensions["idp"], app.test_client()
    make_user(svc, "ann")
    for typed in ("ann", "ann@example.org"):
        assert _post(client, "/password/reset", {"email": typed}).status_code == 200
    before = {k for k in _store(svc) if k.startswith("rl:reset:account:")}
    assert len(before) == 2
    with transaction(svc, Actor.operator("test")) as ctx:
        gdpr.erase(ctx, ctx.db.scalar(select(User).where(User.username == "ann")))
    assert not before & set(_store(svc))


@pytest.mark.postgres
def test_two_apps_on_one_postgresql_share_the_counts(make_app, clock, pg_url):
    first, second = _two_nodes(make_app, clock, database_url=pg_url)
    assert first.extensions["idp"].engine.dialect.name == "postgresql"
    _shared_count(first, second)
