"""What the token endpoint's hot path keeps between calls stays true to its inputs: the rate
limiter is rebuilt when the settings are reloaded (or the store, clock or hasher replaced), and
the client's address is worked out once per request but never served for another peer."""

from __future__ import annotations

from idp.clock import FrozenClock
from idp.manage.policies import apply_to_services
from idp.settings import load_settings
from idp.web import ratelimit
from idp.web.requestinfo import client_ip


def test_the_rate_limiter_follows_reloaded_settings_and_replaced_parts(make_app, instance_dir):
    app = make_app(rate_limits={"client_auth_per_address": 7})
    svc = app.extensions["idp"]
    with app.test_request_context("/oauth2/token", method="POST"):
        first = ratelimit.limiter()
        assert ratelimit.limiter() is first  # kept while nothing changed
        assert first.rules["client_auth"].per_address == 7

        fresh = load_settings(
            {"instance_dir": str(instance_dir), "rate_limits": {"client_auth_per_address": 3}}
        )
        apply_to_services(svc, fresh)  # what a console change does on every worker
        reloaded = ratelimit.limiter()
        assert reloaded is not first and reloaded.rules["client_auth"].per_address == 3

        svc.clock = FrozenClock(1_800_000_000.0)
        assert ratelimit.limiter().clock is svc.clock
        svc.store = object()
        assert ratelimit.limiter().store is svc.store


def test_the_client_address_is_read_once_and_never_kept_for_another_peer(make_app):
    app = make_app()
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": "::ffff:192.0.2.7"}) as ctx:
        assert client_ip() == "192.0.2.7"
        assert ctx.request.environ["idp.client_ip"] == ("::ffff:192.0.2.7", "192.0.2.7")
        assert client_ip() == "192.0.2.7"
        # A middleware that sets the peer afterwards (a trusted proxy's header) is followed.
        ctx.request.environ["REMOTE_ADDR"] = "2001:db8::1"
        assert client_ip() == "2001:db8::1"
        ctx.request.environ["REMOTE_ADDR"] = "not an address"
        assert client_ip() is None
