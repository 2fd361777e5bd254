"""/metrics: Prometheus text format read back with prometheus-client's own parser; counters move
by exactly what the requests did (sign-ins by outcome and reason, tokens by grant, routes by
pattern, backend errors); the endpoint answers only the allowed networks and, when a secret is
set, only with it. The multiprocess sum over `idp serve` workers is tested in test_serve.py."""

from __future__ import annotations

import base64
import secrets

import pytest
from login_kit import GOOD, login, make_user
from prometheus_client.parser import text_string_to_metric_families

from idp.manage import Actor, transaction
from idp.manage import clients as manage_clients


def scrape(client, **kw) -> dict[tuple[str, tuple], float]:
    resp = client.get("/metrics", **kw)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.content_type.startswith("text/plain")
    values: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_counted_per_route_pattern_method_and_status(app):
    client = app.test_client()
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    # A route with a variable part is one series, whatever the value (bounded cardinality).
    client.get("/avatars/one.png")
    client.get("/avatars/two.png")
    after = scrape(client)
    key = {"endpoint": "/healthz", "method": "GET", "status": "200"}
    assert value(after, "idp_http_requests_total", **key) - value(
        before, "idp_http_requests_total", **key
    ) == 3
    miss = {"endpoint": "unmatched", "method": "GET", "status": "404"}
    assert value(after, "idp_http_requests_total", **miss) - value(
        before, "idp_http_requests_total", **miss
    ) == 1
    assert not any("one.png" in str(labels) for _, labels in after)
    avatar = [labels for name, labels in after
              if name == "idp_http_requests_total" and ("endpoint", "/avatars/<name>") in labels]
    assert avatar, "the route pattern is the label"
    count = ("idp_http_request_duration_seconds_count", (("endpoint", "/healthz"),))
    assert after[count] - before.get(count, 0.0) == 3


def test_signins_counted_by_outcome_and_reason(app):
    svc = app.extensions["idp"]
    make_user(svc, "metric-user")
    before = scrape(app.test_client())
    login(app.test_client(), "metric-user", "wrong password 1")
    login(app.test_client(), "metric-user", GOOD)
    after = scrape(app.test_client())

    def moved(**labels):
        return value(after, "idp_signins_total", **labels) - value(
            before, "idp_signins_total", **labels
        )

    failures = {labels: v - before.get((name, labels), 0.0) for (name, labels), v in after.items()
                if name == "idp_signins_total" and ("outcome", "failure") in labels}
    assert sum(failures.values()) == 1, failures
    assert moved(outcome="success", reason="") == 1
    audited = ("idp_audit_events_total", (("action", "login.success"),))
    assert after[audited] - before.get(audited, 0.0) == 1


def _client(app, grant_types=("client_credentials",)) -> tuple[str, str]:
    svc = app.extensions["idp"]
    client_id = "metrics-" + secrets.token_hex(3)
    with transaction(svc, Actor.operator("test")) as ctx:
        _, secret = manage_clients.create(
            ctx, client_id, name=client_id, grant_types=list(grant_types), scope="openid"
        )
    return client_id, secret


def test_tokens_counted_by_grant_and_refusals_not(app):
    client_id, secret = _client(app)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}
    client = app.test_client()
    before = scrape(client)
    ok = client.post("/oauth2/token", data={"grant_type": "client_credentials"}, headers=auth)
    assert ok.status_code == 200
    bad = {"Authorization": "Basic " + base64.b64encode(f"{client_id}:nope".encode()).decode()}
    assert client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers=bad
    ).status_code == 401
    # A made-up grant type name never becomes a label of its own.
    client.post("/oauth2/token", data={"grant_type": "x" * 50}, headers=auth)
    after = scrape(client)
    grant = {"grant_type": "client_credentials"}
    assert value(after, "idp_tokens_issued_total", **grant) - value(
        before, "idp_tokens_issued_total", **grant
    ) == 1
    assert not any("x" * 50 in str(labels) for _, labels in after)


@pytest.mark.parametrize("peer", ["203.0.113.9", "10.1.2.3", "2001:db8::1"])
def test_loopback_only_by_default(app, peer):
    resp = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": peer})
    assert resp.status_code == 403
    assert b"idp_http_requests_total" not in resp.data


def test_a_configured_network_may_scrape(make_app):
    app = make_app(metrics={"allowed_networks": ["10.0.0.0/8"]})
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 403


@pytest.mark.parametrize("given", [None, "Bearer wrong", "Basic c2NyYXBlcjpzM2NyZXQ="])
def test_secret_required_when_set(make_app, given):
    app = make_app(metrics={"secret": "s3cret-for-scrapers"})
    headers = {"Authorization": given} if given else {}
    resp = app.test_client().get("/metrics", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"idp_" not in resp.data
    good = app.test_client().get(
        "/metrics", headers={"Authorization": "Bearer s3cret-for-scrapers"}
    )
    assert good.status_code == 200


def test_disabled_is_not_found(make_app):
    app = make_app(metrics={"enabled": False})
    assert app.test_client().get("/metrics").status_code == 404


def test_unusable_store_is_counted_as_a_store_error(make_app, app):
    """Redis gone: the failed request is counted under backend=store (and answered 503
    temporarily_unavailable, no trace; tests/faults/test_fault_redis.py has the rest)."""
    before = scrape(app.test_client())
    broken = make_app(redis_url="redis://127.0.0.1:1/0")
    resp = broken.test_client().post("/oauth2/token", data={"grant_type": "client_credentials",
                                                           "client_id": "x", "client_secret": "y"})
    assert resp.status_code == 503 and resp.json["error"] == "temporarily_unavailable"
    assert "Traceback" not in resp.get_data(as_text=True)
    after = scrape(app.test_client())
    assert value(after, "idp_backend_errors_total", backend="store") - value(
        before, "idp_backend_errors_total", backend="store"
    ) >= 1


def test_failed_mail_counted_as_smtp_error(app):
    from idp.delivery.mail import MailError, MailQueue

    class Down:
        def send(self, msg):
            raise MailError("SMTP delivery failed: connection refused")

    before = scrape(app.test_client())
    queue = MailQueue(
        Down(), app.extensions["idp"].mail_queue.outbox, attempts=1, retry_seconds=1, timeout=5
    )
    queue.put("test", lambda: app.extensions["idp"].mailer.compose("a@example.org", "s", "t"))
    assert queue.wait_idle(10)
    after = scrape(app.test_client())
    assert value(after, "idp_backend_errors_total", backend="smtp") - value(
        before, "idp_backend_errors_total", backend="smtp"
    ) == 1
    # Accepted and given up: the outbox holds nothing left to send.
    assert value(after, "idp_mail_queue_depth", queue="mail") == value(
        before, "idp_mail_queue_depth", queue="mail"
    )
