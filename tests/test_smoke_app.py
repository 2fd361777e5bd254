"""The app factory builds a working app from settings; probes and discovery answer."""

import itsdangerous
import pytest


def test_readyz_and_discovery(make_app):
    client = make_app().test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "store": "ok"}
    doc = client.get("/.well-known/openid-configuration").json
    assert doc["issuer"] == "http://127.0.0.1:5000"
    jwks = client.get("/jwks").json
    assert {k["kty"] for k in jwks["keys"]} == {"RSA", "EC", "OKP"}


def test_cookie_session_serializer_is_built_once_per_secret(make_app):
    """The session cookie's serializer is kept, and follows a change of the secret key: a
    cookie signed under the old key is not accepted under the new one."""
    app = make_app()
    iface = app.session_interface
    first = iface.get_signing_serializer(app)
    assert iface.get_signing_serializer(app) is first
    cookie = first.dumps({"csrf_token": "x"})
    app.secret_key = "another secret key of enough length for the test"
    second = iface.get_signing_serializer(app)
    assert second is not first
    assert second.loads(second.dumps({"a": 1})) == {"a": 1}
    with pytest.raises(itsdangerous.BadSignature):
        second.loads(cookie)
