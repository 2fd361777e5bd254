"""The protocol-neutral pieces of brokering (idp.core.broker): mapping rules as data, their
checks, home-realm domains, the identity's round trip through the store; and the per-client /
per-SP ``allowed_upstreams`` checks."""

from __future__ import annotations

import pytest

from idp.core.broker import (
    UpstreamIdentity,
    attributes_of,
    login_domain,
    map_identity,
    parse_domains,
    parse_rules,
)
from idp.core.client_metadata import MetadataError, check_client_metadata
from idp.errors import ValidationError
from idp.saml.registry import validate_settings


def _identity(**claims) -> UpstreamIdentity:
    return UpstreamIdentity("corp", "s-1", "ann@corp.example", True, attributes_of(claims))


def test_standard_claims_then_rules_in_order():
    identity = _identity(given_name="Ann", name="Ann Example", groups=["admins", "staff"],
                         department="Finance", preferred_username="ann")
    rules = parse_rules([
        {"claim": "groups", "value": "admins", "group": "Admins"},
        {"claim": "groups", "value": "nobody", "group": "Never"},
        {"claim": "department", "role": "Auditor"},
        {"group": "Partners"},
        {"claim": "department", "field": "display_name"},
        {"claim": "missing", "field": "family_name"},
    ])
    profile = map_identity(identity, rules)
    assert profile.fields == {"username": "ann", "given_name": "Ann",
                              "display_name": "Finance", "email": "ann@corp.example"}
    assert profile.groups == ("Admins", "Partners")
    assert profile.roles == ("Auditor",)


@pytest.mark.parametrize(("rules", "needle"), [
    ("not a list", "a list"),
    ([{"claim": "x"}], "exactly one of field, group, role"),
    ([{"claim": "x", "group": "A", "role": "B"}], "exactly one of"),
    ([{"claim": "x", "field": "password_hash"}], "field must be one of"),
    ([{"field": "given_name"}], "names a claim"),
    ([{"claim": "mail", "field": "email"}], "field must be one of"),
    ([{"claim": "x", "value": "y", "field": "locale"}], "names a claim and no value"),
    ([{"value": "y", "group": "A"}], "a value needs a claim"),
    ([{"claim": "x", "group": ""}], "non-empty"),
    ([{"claim": "x", "group": "A", "when": "y"}], "unknown key 'when'"),
    ([{"group": "A"}] * 101, "at most 100"),
])
def test_bad_rules_are_refused_naming_the_problem(rules, needle):
    with pytest.raises(ValueError, match=needle):
        parse_rules(rules)


def test_login_domains_and_hrd_domains():
    assert login_domain("Ann@Corp.Example") == "corp.example"
    assert login_domain("ann") is None
    assert login_domain("@corp.example") is None
    assert login_domain("ann@localhost") is None
    assert parse_domains(["Corp.Example.", "corp.example", "sub.corp.example"]) == [
        "corp.example", "sub.corp.example"]
    with pytest.raises(ValueError, match="not a domain name"):
        parse_domains(["corp example"])


def test_the_identity_survives_the_store_as_json():
    import json

    identity = _identity(groups=["a", "b"], email_verified=True, address={"x": 1})
    again = UpstreamIdentity.from_dict(json.loads(json.dumps(identity.to_dict())))
    assert again == identity
    assert "address" not in again.attributes  # objects are left out
    assert again.attributes["email_verified"] == ("true",)


def test_allowed_upstreams_of_a_client_and_an_sp_are_checked():
    base = {"redirect_uris": ["https://rp.example.org/cb"]}
    check_client_metadata({**base, "allowed_upstreams": ["corp", "gh"]})
    for bad in ("corp", ["Not Alias"], [1]):
        with pytest.raises(MetadataError, match="allowed_upstreams"):
            check_client_metadata({**base, "allowed_upstreams": bad})
    assert validate_settings({"allowed_upstreams": ["corp"]}) == {"allowed_upstreams": ["corp"]}
    with pytest.raises(ValidationError, match="allowed_upstreams"):
        validate_settings({"allowed_upstreams": ["Not Alias"]})


def test_github_like_primary_email_is_verified_only_when_the_provider_says_so(tmp_path):
    from oidc_support import serve_json

    from idp.broker.oauth2 import OAuth2Upstream
    from idp.services import build_services
    from idp.settings import load_settings

    svc = build_services(load_settings({"instance_dir": str(tmp_path), "broker": {
        "allow_http": True, "allow_private_addresses": True}}))
    from idp.storage.migrate import upgrade

    upgrade(svc.engine)
    upstream = OAuth2Upstream()
    listed = [{"email": "old@x.example", "primary": False, "verified": True},
              {"email": "me@x.example", "primary": True, "verified": True}]
    with serve_json(listed) as url:
        assert upstream._primary_email(svc, url, "t") == ("me@x.example", True)
    listed[1]["verified"] = False
    with serve_json(listed) as url:
        assert upstream._primary_email(svc, url, "t") == ("me@x.example", False)
    with serve_json({"message": "Bad credentials"}) as url:
        assert upstream._primary_email(svc, url, "t") == (None, False)
    svc.engine.dispose()
