"""The RFC 8693 token exchange policy (``token_exchange`` client metadata) where it is written:
the one metadata validator, and ``/api/v1/clients`` (its schema and the validator behind it).
A refused policy changes nothing; a public client never gets the grant."""

from __future__ import annotations

import pytest
from api_kit import api, service_token
from sqlalchemy import select

from idp.core.client_metadata import TOKEN_EXCHANGE, MetadataError, check_client_metadata
from idp.storage.models import Client

POLICY = {"accept_from": ["web"], "audiences": ["https://api.example.org/"],
          "delegation": True, "impersonation": False, "max_lifetime": 300}


@pytest.fixture
def admin(app):
    return service_token(app)


def _meta(**extra):
    return {"grant_types": [TOKEN_EXCHANGE], "token_endpoint_auth_method": "client_secret_basic",
            **extra}


@pytest.mark.parametrize("policy, why", [
    ("yes", "must be an object"),
    ({"accept_from": "web"}, "accept_from must be a list"),
    ({"audiences": [""]}, "audiences must be a list"),
    ({"audiences": ["a b"]}, "audiences must be a list"),
    ({"accept_from": ["x"] * 51}, "accept_from must be a list"),
    ({"delegation": "true"}, "delegation must be true or false"),
    ({"max_lifetime": 10}, "max_lifetime must be"),
    ({"max_lifetime": True}, "max_lifetime must be"),
    ({"everyone": True}, "'everyone' is not a policy member"),
])
def test_the_validator_refuses_a_bad_policy(policy, why):
    with pytest.raises(MetadataError) as refused:
        check_client_metadata(_meta(token_exchange=policy))
    assert refused.value.field == "token_exchange" and why in refused.value.description


def test_the_validator_accepts_a_policy_and_refuses_the_grant_to_a_public_client():
    check_client_metadata(_meta(token_exchange=POLICY))
    with pytest.raises(MetadataError) as refused:
        check_client_metadata(_meta(token_endpoint_auth_method="none"))
    assert refused.value.field == "token_endpoint_auth_method"


def test_the_api_sets_and_removes_the_policy(app, client, admin):
    resp = api(client, "POST", "/api/v1/clients", admin,
               json={"client_id": "exch", "metadata": {
                   "grant_types": [TOKEN_EXCHANGE, "client_credentials"],
                   "token_exchange": POLICY}})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["metadata"]["token_exchange"] == POLICY
    patched = api(client, "PATCH", "/api/v1/clients/exch", admin,
                  json={"metadata": {"token_exchange": {"accept_from": ["web", "web2"],
                                                        "impersonation": True}}})
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["metadata"]["token_exchange"] == {
        "accept_from": ["web", "web2"], "impersonation": True}
    removed = api(client, "PATCH", "/api/v1/clients/exch", admin,
                  json={"metadata": {"token_exchange": None}})
    assert "token_exchange" not in removed.get_json()["metadata"]
    schema = client.get("/api/v1/openapi.json").get_json()
    assert "TokenExchangePolicy" in schema["components"]["schemas"]


@pytest.mark.parametrize("metadata", [
    {"grant_types": [TOKEN_EXCHANGE], "token_exchange": {"accept_from": "web"}},
    {"grant_types": [TOKEN_EXCHANGE], "token_exchange": {"max_lifetime": 5}},
    {"grant_types": [TOKEN_EXCHANGE], "token_exchange": {"accept_from": ["a\tb"]}},
    {"grant_types": [TOKEN_EXCHANGE], "token_exchange": {"anyone": True}},
    {"grant_types": [TOKEN_EXCHANGE], "token_endpoint_auth_method": "none"},
])
def test_bad_policies_are_400_and_store_nothing(app, client, admin, metadata):
    resp = api(client, "POST", "/api/v1/clients", admin,
               json={"client_id": "bad", "metadata": metadata})
    assert resp.status_code == 400, resp.get_json()
    with app.extensions["idp"].sessions() as db:
        assert db.scalar(select(Client).where(Client.client_id == "bad")) is None


def test_a_bad_patch_leaves_the_stored_policy(app, client, admin):
    api(client, "POST", "/api/v1/clients", admin,
        json={"client_id": "kept", "metadata": {"grant_types": [TOKEN_EXCHANGE],
                                                "token_exchange": POLICY}})
    resp = api(client, "PATCH", "/api/v1/clients/kept", admin,
               json={"metadata": {"token_exchange": {"delegation": "yes"}}})
    assert resp.status_code == 400
    with app.extensions["idp"].sessions() as db:
        assert db.get(Client, "kept").meta["token_exchange"] == POLICY
