"""The app factory builds a working app from settings; probes and discovery answer."""


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
