"""The URI rules of client metadata (idp/core/client_metadata.py ``uri_problem``) as a table:
each input, the field, and the exact reason a client is told (RFC 7591 §3.2.2 puts it in
error_description). Pure and fast: part of the mutation tier's "redirect" target
(docs/development.md "Mutation testing"); tests/oidc/test_client_metadata_validation.py drives
the same rules through registration, the CLI and the API."""

from __future__ import annotations

import pytest

from idp.core.client_metadata import (
    MAX_URI_LENGTH,
    MetadataError,
    Policy,
    check_uri,
    is_loopback_host,
    safe_uri,
    uri_problem,
)

LONG = "https://rp.example.org/" + "a" * (MAX_URI_LENGTH - len("https://rp.example.org/"))
OPEN = Policy(allow_http=True, allow_private_addresses=True)


@pytest.mark.parametrize(("field", "uri", "problem"), [
    ("redirect_uris", "", "must be a non-empty string"),
    ("redirect_uris", 5, "must be a non-empty string"),
    ("redirect_uris", ["https://rp.example.org/cb"], "must be a non-empty string"),
    ("redirect_uris", LONG, None),
    ("redirect_uris", LONG + "a", f"is longer than {MAX_URI_LENGTH} characters"),
    ("redirect_uris", "https://rp.example.org/a b", "must contain only printable ASCII "
                                                    "characters (no spaces or control characters)"),
    ("redirect_uris", "\tjavascript:alert(1)", "must contain only printable ASCII characters "
                                               "(no spaces or control characters)"),
    ("redirect_uris", "/relative/cb", "is not an absolute URI"),
    ("redirect_uris", "JavaScript:alert(1)", "uses the forbidden scheme javascript:"),
    ("redirect_uris", "https://rp.example.org/cb#x", "must not contain a fragment"),
    ("redirect_uris", "https://rp.example.org:99999/cb", "is not a valid URI"),
    ("redirect_uris", "com.example.app:/cb", None),
    ("redirect_uris", "myapp:/cb", "must use https (or a private-use scheme that is a reverse "
                                   "domain name)"),
    ("post_logout_redirect_uris", "com.example.app:/cb", "must be an https URL"),
    ("jwks_uri", "com.example.app:/cb", "must be an https URL"),
    ("redirect_uris", "https:///cb", "has no host"),
    ("redirect_uris", "https://:443/cb", "has no host"),
    ("redirect_uris", "http://user@127.0.0.1/cb", "must not contain user information"),
    ("redirect_uris", "https://user:pw@rp.example.org/cb", "must not contain user information"),
    ("redirect_uris", "http://127.0.0.1:8080/cb", None),
    ("redirect_uris", "http://localhost/cb", None),
    ("redirect_uris", "http://[::1]/cb", None),
    ("redirect_uris", "http://rp.example.org/cb", "must use https (http only on a loopback host)"),
    ("post_logout_redirect_uris", "http://127.0.0.1/bye", None),
    ("post_logout_redirect_uris", "http://rp.example.org/bye",
     "must use https (http only on a loopback host)"),
    ("logo_uri", "http://127.0.0.1/logo.png", "must be an https URL"),
    ("logo_uri", "https://rp.example.org/logo.png", None),
    ("jwks_uri", "http://rp.example.org/jwks", "must be an https URL"),
    ("jwks_uri", "https://127.0.0.1/jwks", "must not point at a loopback or private address"),
    ("jwks_uri", "https://10.1.2.3/jwks", "must not point at a loopback or private address"),
    ("jwks_uri", "https://localhost/jwks", "must not point at a loopback or private address"),
    ("jwks_uri", "https://8.8.8.8/jwks", None),
    ("jwks_uri", "https://rp.example.org/jwks", None),
])
def test_the_reason_given_for_each_uri(field, uri, problem):
    assert uri_problem(field, uri) == problem
    assert safe_uri(field, uri) is (problem is None)


@pytest.mark.parametrize(("uri", "problem"), [
    ("http://rp.example.org/jwks", None),
    ("https://127.0.0.1/jwks", None),
    ("http://user@127.0.0.1/jwks", "must not contain user information"),
])
def test_outbound_policy_opens_http_and_private_addresses_for_fetched_uris(uri, problem):
    assert uri_problem("jwks_uri", uri, OPEN) == problem
    assert uri_problem("redirect_uris", "http://rp.example.org/cb", OPEN) == (
        "must use https (http only on a loopback host)")


def test_check_uri_names_the_field_and_the_error_code():
    with pytest.raises(MetadataError) as refused:
        check_uri("redirect_uris", "http://user@127.0.0.1/cb")
    assert refused.value.error == "invalid_redirect_uri" and refused.value.field == "redirect_uris"
    assert refused.value.description == (
        "redirect_uris: 'http://user@127.0.0.1/cb' must not contain user information")
    with pytest.raises(MetadataError) as refused:
        check_uri("logo_uri", LONG + "a")
    assert refused.value.error == "invalid_client_metadata"
    assert refused.value.description == (
        f"logo_uri: 'the value' is longer than {MAX_URI_LENGTH} characters")
    check_uri("redirect_uris", "https://rp.example.org/cb")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("localhost", True),
    ("LocalHost", True), ("", False), (None, False), ("10.0.0.1", False),
    ("rp.example.org", False), ("localhost.example.org", False),
])
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback
