"""The outbound guard (``idp/oidc/fetch.py``) for every URL a client gives the IdP to connect
to: jwks_uri (private_key_jwt, RFC 7523 §3), sector_identifier_uri (OIDC Registration §5) and
backchannel_logout_uri (Back-Channel Logout 1.0 §2.5). Issue 15, item 5: SSRF to loopback,
private and link-local addresses, and a 500 from the token endpoint when a client's keys could
not be had (RFC 6749 §5.2 wants ``invalid_client``, 401).

Refused destinations are proven unreached two ways: a local server that counts its hits sees
none, and ``socket.create_connection`` is replaced so that no connection can leave the process
at all (no test here may send a packet to a non-loopback address)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey
from oidc_support import build_env, initial_access_token

from idp.core.client_metadata import Policy
from idp.oidc.fetch import address_problem
from idp.storage.clients import ClientRegistry
from idp.storage.models import Client

KEY = ECKey.generate_key("P-256", parameters={"kid": "out-1"})
JWKS = {"keys": [KEY.as_dict(private=False)]}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class Recorder:
    """A local HTTP server that answers as told and records every request it gets."""

    def __init__(self, answer=None) -> None:
        self.hits: list[dict] = []
        self.answer = answer or (lambda handler: (200, json.dumps(JWKS).encode(), {}))
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                recorder.hits.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "host": self.headers.get("Host"),
                        "body": self.rfile.read(length) if length else b"",
                    }
                )
                status, body, headers = recorder.answer(self)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if not headers.pop("X-Stream", None):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

            do_GET = do_POST = _any  # noqa: N815 - http.server's names

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def __enter__(self) -> Recorder:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def no_outside_connections(monkeypatch) -> Iterator[list]:
    """Record every connection attempt; only loopback ones go through."""
    real = socket.create_connection
    attempts: list = []

    def guarded(address, *args, **kwargs):
        attempts.append(address)
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError("test: no connection outside loopback")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    yield attempts


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """The default [outbound] settings: https only, no private addresses."""
    with build_env(tmp_path_factory, {}) as built:
        yield built


@pytest.fixture(scope="module")
def open_env(tmp_path_factory):
    """What the tests' local RPs need, with a short timeout."""
    with build_env(
        tmp_path_factory, {"allow_http": True, "allow_private_addresses": True, "timeout": 1}
    ) as built:
        yield built


def _key_client(env, jwks_uri: str) -> str:
    """A stored private_key_jwt client (as a row written before the validator, or while the
    outbound settings were open)."""
    client_id = "k-" + uuid.uuid4().hex[:10]
    with env.svc.sessions.begin() as db:
        ClientRegistry(db, env.svc.hasher, env.svc.sealer, Policy(True, True)).create(
            client_id,
            grant_types=["client_credentials"],
            auth_method="private_key_jwt",
            scope="api",
            jwks_uri=jwks_uri,
        )
    return client_id


def _token(env, client_id: str):
    now = int(env.svc.clock.now())
    assertion = jose_jwt.encode(
        {"alg": "ES256", "kid": "out-1"},
        {
            "iss": client_id,
            "sub": client_id,
            "aud": "http://127.0.0.1:5000",
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        },
        KEY,
        algorithms=["ES256"],
    )
    return env.client().post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )


def _assert_invalid_client(resp) -> None:
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert resp.json["error"] == "invalid_client"
    assert "access_token" not in resp.json
    assert resp.headers["WWW-Authenticate"].startswith("Basic")


REFUSED = [
    "http://127.0.0.1:{port}/jwks",
    "https://127.0.0.1:{port}/jwks",
    "https://127.1.2.3:{port}/jwks",
    "https://localhost:{port}/jwks",
    "https://[::1]:{port}/jwks",
    "https://[::ffff:127.0.0.1]:{port}/jwks",
    "https://0.0.0.0:{port}/jwks",
    "https://10.0.0.1/jwks",
    "https://172.16.5.4/jwks",
    "https://192.168.1.1/jwks",
    "https://100.64.0.1/jwks",
    "https://169.254.169.254/latest/meta-data/",
    "https://[fe80::1]/jwks",
    "https://[fc00::1]/jwks",
    "https://224.0.0.1/jwks",
    "https://240.0.0.1/jwks",
    "http://rp.example.org/jwks",
]


@pytest.mark.parametrize("template", REFUSED)
def test_refused_jwks_uri_makes_no_connection_and_answers_invalid_client(
    strict, monkeypatch, template
):
    with Recorder() as server, no_outside_connections(monkeypatch) as attempts:
        client_id = _key_client(strict, template.format(port=server.port))
        _assert_invalid_client(_token(strict, client_id))
        assert server.hits == [] and attempts == []


def test_a_name_resolving_to_a_private_address_is_refused(strict, monkeypatch):
    """Every resolved address is checked: one private address among public ones refuses."""
    answers = {
        "internal.rp.test": ["10.1.2.3"],
        "mixed.rp.test": ["8.8.8.8", "127.0.0.1"],
        "mapped.rp.test": ["::ffff:169.254.169.254"],
    }

    def fake_getaddrinfo(host, port, *args, **kwargs):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with no_outside_connections(monkeypatch) as attempts:
        for host in answers:
            _assert_invalid_client(_token(strict, _key_client(strict, f"https://{host}/jwks")))
        assert attempts == []


def test_with_the_setting_the_local_server_is_fetched(open_env):
    with Recorder() as server:
        client_id = _key_client(open_env, f"http://127.0.0.1:{server.port}/jwks")
        resp = _token(open_env, client_id)
        assert resp.status_code == 200, resp.json
        assert [h["path"] for h in server.hits] == ["/jwks"]


def test_connects_to_the_address_it_checked_not_a_second_lookup(open_env, monkeypatch):
    """DNS rebinding: the name is resolved once; the connection goes to that address, and the
    host name is kept for the Host header (and SNI / certificate checks over https)."""
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.rp.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "10.9.9.9"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with Recorder() as server, no_outside_connections(monkeypatch) as attempts:
        client_id = _key_client(open_env, f"http://rebind.rp.test:{server.port}/jwks")
        resp = _token(open_env, client_id)
        assert resp.status_code == 200, resp.json
        assert lookups == ["rebind.rp.test"]
        assert attempts == [("127.0.0.1", server.port)]
        assert server.hits[0]["host"] == f"rebind.rp.test:{server.port}"


def _slow(handler):
    time.sleep(2.5)
    return 200, json.dumps(JWKS).encode(), {}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(_slow, id="slower-than-the-timeout"),
        pytest.param(lambda h: (200, b"[" + b"1," * 300_000 + b"1]", {}), id="oversize"),
        pytest.param(
            lambda h: (200, b"[" + b"1," * 300_000 + b"1]", {"X-Stream": "1"}),
            id="oversize-without-length",
        ),
        pytest.param(lambda h: (500, b"{}", {}), id="http-500"),
        pytest.param(lambda h: (200, b"<html>not json</html>", {}), id="not-json"),
        pytest.param(lambda h: (200, b'{"keys": []}', {}), id="no-keys"),
        pytest.param(lambda h: (200, b'{"keys": [{"kty": "nonsense"}]}', {}), id="bad-key"),
        pytest.param(lambda h: (200, b'{"keys": "x"}', {}), id="keys-not-a-list"),
    ],
)
def test_keys_that_cannot_be_had_are_invalid_client_never_500(open_env, answer):
    with Recorder(answer) as server:
        client_id = _key_client(open_env, f"http://127.0.0.1:{server.port}/jwks")
        started = time.monotonic()
        _assert_invalid_client(_token(open_env, client_id))
        assert time.monotonic() - started < 2.4  # bounded by [outbound] timeout = 1
        assert len(server.hits) == 1


def test_unreachable_jwks_uri_is_invalid_client(open_env):
    with Recorder() as server:
        port = server.port
    client_id = _key_client(open_env, f"http://127.0.0.1:{port}/jwks")  # nobody listens
    _assert_invalid_client(_token(open_env, client_id))


def test_redirects_are_not_followed(open_env):
    with Recorder() as target:
        moved = lambda h: (302, b"", {"Location": f"http://127.0.0.1:{target.port}/jwks"})  # noqa: E731
        with Recorder(moved) as server:
            client_id = _key_client(open_env, f"http://127.0.0.1:{server.port}/jwks")
            _assert_invalid_client(_token(open_env, client_id))
            assert len(server.hits) == 1 and target.hits == []


def test_a_failed_destination_is_not_tried_again_for_a_while(make_app, clock):
    app = make_app(clock=clock, outbound={"allow_http": True, "allow_private_addresses": True})

    class Env:
        svc = app.extensions["idp"]
        client = app.test_client

    with Recorder(lambda h: (503, b"", {})) as server:
        client_id = _key_client(Env, f"http://127.0.0.1:{server.port}/jwks")
        _assert_invalid_client(_token(Env, client_id))
        _assert_invalid_client(_token(Env, client_id))
        assert len(server.hits) == 1  # the second failure came from the negative cache
        clock.advance(31)
        _assert_invalid_client(_token(Env, client_id))
        assert len(server.hits) == 2


@pytest.mark.parametrize(("side", "fetched_again"), [(-1, False), (1, True)])
def test_a_failed_destination_is_remembered_for_failure_cache_seconds(
    make_app, clock, side, fetched_again
):
    """``[outbound] failure_cache_seconds = 45`` (not the default 30), one step either side
    (a second on the SQL store; support.boundary_step on Redis)."""
    from support import boundary_step

    app = make_app(
        clock=clock,
        outbound={"allow_http": True, "allow_private_addresses": True, "failure_cache_seconds": 45},
    )

    class Env:
        svc = app.extensions["idp"]
        client = app.test_client

    with Recorder(lambda h: (503, b"", {})) as server:
        client_id = _key_client(Env, f"http://127.0.0.1:{server.port}/jwks")
        _assert_invalid_client(_token(Env, client_id))
        assert len(server.hits) == 1
        clock.advance(45 + side * boundary_step(Env.svc))
        _assert_invalid_client(_token(Env, client_id))
        assert len(server.hits) == (2 if fetched_again else 1)


# --- back-channel logout and sector identifier documents go through the same guard ------------


def test_backchannel_logout_to_a_private_address_is_not_sent(strict, monkeypatch):
    from idp.oidc.logout import deliver

    with Recorder() as server, no_outside_connections(monkeypatch) as attempts:
        for uri in (
            f"http://127.0.0.1:{server.port}/bcl",
            f"https://localhost:{server.port}/bcl",
            "https://169.254.169.254/bcl",
        ):
            assert deliver(strict.svc, "web", uri, "token") is False
        assert server.hits == [] and attempts == []


def test_backchannel_logout_failures_are_remembered(open_env, monkeypatch):
    from idp.oidc.logout import deliver

    with Recorder() as server:
        port = server.port
    uri = f"http://127.0.0.1:{port}/bcl"  # nobody listens any more
    monkeypatch.setattr(time, "sleep", lambda s: None)
    with no_outside_connections(monkeypatch) as attempts:
        assert deliver(open_env.svc, "web", uri, "token") is False
        tried = len(attempts)
        assert tried == open_env.svc.settings.oidc.backchannel_attempts
        assert deliver(open_env.svc, "web", uri, "token") is False
        assert len(attempts) == tried  # not tried again while remembered


def test_backchannel_logout_is_posted_with_the_setting(open_env):
    from idp.oidc.logout import deliver

    with Recorder() as server:
        assert deliver(open_env.svc, "web", f"http://127.0.0.1:{server.port}/bcl", "tok") is True
        assert server.hits[0]["method"] == "POST" and server.hits[0]["body"] == b"logout_token=tok"


def test_sector_identifier_uri_on_a_private_address_is_not_fetched(strict, monkeypatch):
    real_getaddrinfo = socket.getaddrinfo

    def to_loopback(host, port, *args, **kwargs):
        if host == "sector.rp.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", to_loopback)
    with (
        Recorder(lambda h: (200, b'["https://sector.example.org/cb"]', {})) as server,
        no_outside_connections(monkeypatch) as attempts,
    ):
        with strict.svc.sessions() as db:
            before = db.query(Client).count()
        resp = strict.client().post(
            "/oauth2/register",
            headers={"Authorization": f"Bearer {initial_access_token(strict)}"},
            json={
                "redirect_uris": ["https://sector.example.org/cb"],
                "sector_identifier_uri": f"https://sector.rp.test:{server.port}/s.json",
            },
        )
        assert resp.status_code == 400 and resp.json["error"] == "invalid_client_metadata"
        assert "sector_identifier_uri" in resp.json["error_description"]
        assert server.hits == [] and attempts == []
        with strict.svc.sessions() as db:
            assert db.query(Client).count() == before


@pytest.mark.parametrize(
    "address,refused",
    [
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("172.31.255.255", True),
        ("192.168.0.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),  # noqa: S104 - an address to refuse, never bound
        ("224.0.0.251", True),
        ("255.255.255.255", True),
        ("::1", True),
        ("::", True),
        ("fe80::1%1", True),
        ("fd12:3456::1", True),
        ("ff02::1", True),
        ("::ffff:10.0.0.1", True),
        ("64:ff9b::7f00:1", True),
        ("2002:7f00:1::", True),
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_address_classes(address, refused):
    assert (address_problem(address) is not None) is refused
