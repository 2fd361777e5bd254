"""The one client-metadata validator (idp.core.client_metadata) on generated documents:
arbitrary JSON, documents of known members with arbitrary values, and a valid document with
members replaced or dropped. Each is accepted or refused with ``MetadataError`` naming the
member (RFC 7591 §3.2.2 code); no other exception. Through RFC 7591 registration (open
registration) the same documents are 201 or the RFC 7591 error JSON with no client stored,
and a registered client's own document, PUT back (RFC 7592), changes nothing: validation of
the stored form is idempotent.

Redirect URIs: generated URIs with control characters, non-ASCII, user information,
fragments, ports, IPv6 literals and every kind of scheme; what the validator accepts, an
independent parser (urllib3's RFC 3986 one) reads with the same scheme and host, no user
information and no fragment."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from oidc_support import build_env
from sqlalchemy import select
from urllib3.util import parse_url

from idp.core.client_metadata import (
    AUTH_METHODS,
    GRANT_TYPES,
    SIGNING_ALGS,
    URI_RULES,
    MetadataError,
    check_client_metadata,
    uri_problem,
)
from idp.storage.models import Client

_BOUNDED = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- generated URIs ----------------------------------------------------------------------------

_CONTROL = st.sampled_from(["\x00", "\t", "\n", "\r", "\x1f", "\x7f", " ", "\u200b", "\u202e"])


@st.composite
def uris(draw) -> str:
    scheme = draw(
        st.sampled_from(
            [
                "https",
                "https",
                "http",
                "HTTPS",
                "com.example.app",
                "myapp",
                "javascript",
                "data",
                "file",
                "JaVaScRiPt",
                "",
                "ht tp",
                "x-" + "a" * 3,
            ]
        )
    )
    slashes = draw(st.sampled_from(["://", "://", ":", ":/", ":\\\\", "//", ":///"]))
    userinfo = draw(st.sampled_from(["", "", "", "user@", "u:p@", "@", "rp.example.org@"]))
    host = draw(
        st.sampled_from(
            [
                "rp.example.org",
                "127.0.0.1",
                "localhost",
                "[::1]",
                "[::1",
                "10.0.0.1",
                "b\u00fccher.example",
                "xn--bcher-kva.example",
                "",
                "RP.Example.ORG",
                "0x7f.1",
                "rp.example.org.",
                "evil.example\\@rp.example.org",
            ]
        )
    )
    port = draw(st.sampled_from(["", "", ":443", ":8080", ":99999", ":-1", ":x"]))
    path = draw(st.sampled_from(["/cb", "", "/c b", "/\u00e9", "/%2e%2e/cb", "/cb?x=1", "/?#"]))
    fragment = draw(st.sampled_from(["", "", "", "#", "#f", "%23f"]))
    uri = scheme + slashes + userinfo + host + port + path + fragment
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(uri)))
        uri = uri[:at] + draw(_CONTROL) + uri[at:]
    return uri


@settings(max_examples=600, **_BOUNDED)
@given(uri=uris() | st.text(max_size=40), field=st.sampled_from(sorted(URI_RULES)))
@example(uri="https://evil.example\\@rp.example.org/cb", field="redirect_uris")
def test_accepted_uris_read_the_same_in_an_independent_parser(uri, field):
    if uri_problem(field, uri) is not None:
        return
    from urllib.parse import urlsplit

    ours = urlsplit(uri)
    theirs = parse_url(uri)  # raises LocationParseError where it cannot read the URI
    assert theirs.scheme == ours.scheme.lower()
    assert theirs.auth is None and theirs.fragment is None
    if ours.scheme.lower() in ("http", "https"):
        assert (theirs.host or "").lower().strip("[]") == ours.hostname
        assert theirs.port == ours.port


# --- generated documents -----------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=8,
)
_GOOD = {
    "redirect_uris": ["https://rp.example.org/cb"],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "client_secret_basic",
    "client_name": "Fuzzed",
    "scope": "openid profile",
}
# Values worth trying for each member, beside arbitrary JSON.
_MEMBERS: dict[str, st.SearchStrategy] = {
    **{f: uris() | st.text(max_size=20) for f in URI_RULES},
    "redirect_uris": st.lists(uris(), max_size=2),
    "post_logout_redirect_uris": st.lists(uris(), max_size=2),
    "grant_types": st.lists(st.sampled_from([*GRANT_TYPES, "implicit", "password"]), max_size=3),
    "response_types": st.lists(st.sampled_from(["code", "token", "id_token"]), max_size=2),
    "token_endpoint_auth_method": st.sampled_from([*AUTH_METHODS, "tls_client_auth"]),
    "id_token_signed_response_alg": st.sampled_from([*SIGNING_ALGS, "none", "HS256"]),
    "authorization_encrypted_response_alg": st.sampled_from(["RSA-OAEP", "RSA1_5", "dir"]),
    "authorization_encrypted_response_enc": st.sampled_from(["A128GCM", "A1GCM"]),
    "jwks": st.just({"keys": []}) | st.just({"keys": [{"kty": "RSA", "use": "enc"}]}),
    "subject_type": st.sampled_from(["public", "pairwise", "secret"]),
    "resources": st.lists(uris(), max_size=2),
    "access_token_lifetime": st.integers(-10, 100_000) | st.booleans(),
    "access_token_format": st.sampled_from(["jwt", "opaque", "paseto"]),
    "require_pkce": st.booleans() | st.integers(0, 1),
    "dpop_bound_access_tokens": st.booleans() | st.just("true"),
    "token_exchange": st.fixed_dictionaries(
        {},
        optional={
            "accept_from": st.lists(st.text(max_size=5), max_size=2),
            "delegation": st.booleans() | st.just(1),
            "max_lifetime": st.integers(),
            "evil": st.booleans(),
        },
    ),
    "scope": st.text(max_size=20),
}


@st.composite
def documents(draw):
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(_JSON)
    if kind == 1:
        return draw(st.dictionaries(st.sampled_from(sorted(_MEMBERS)), _JSON, max_size=5))
    doc = dict(_GOOD)
    for name in draw(st.lists(st.sampled_from(sorted(_MEMBERS)), max_size=3, unique=True)):
        choice = draw(st.integers(0, 5))
        if choice == 0:
            doc.pop(name, None)
        else:
            doc[name] = draw(_JSON if choice == 1 else _MEMBERS[name])
    return doc


def _refusal_is_typed(doc) -> MetadataError | None:
    try:
        check_client_metadata(doc)
    except MetadataError as exc:
        assert exc.error in ("invalid_client_metadata", "invalid_redirect_uri")
        if isinstance(doc, dict):  # the description names the member it is about
            assert exc.field and exc.description.startswith(exc.field), exc.description
        return exc
    return None


_RESOURCES_IPV6 = {**_GOOD, "resources": ["http://[x"]}


@settings(max_examples=800, **_BOUNDED)
@given(doc=documents())
@example(doc=_RESOURCES_IPV6)  # was a ValueError out of urlsplit (a 500 at registration)
def test_a_document_is_accepted_or_refused_naming_the_member(doc):
    if _refusal_is_typed(doc) is None:
        # Accepted: as stored (JSON in the database) it is accepted again.
        assert _refusal_is_typed(json.loads(json.dumps(doc))) is None


# --- through RFC 7591 registration and RFC 7592 update ----------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # Every generated registration comes from one address: its rate limit is not under test.
    with build_env(
        tmp_path_factory,
        {},
        oidc={"open_registration": True},
        rate_limits={"client_registration_per_address": 0},
    ) as built:
        yield built


def _clients(env) -> dict[str, str]:
    with env.svc.sessions() as db:
        return {
            row.client_id: json.dumps(row.meta, sort_keys=True)
            for row in db.scalars(select(Client)).all()
        }


@settings(max_examples=60, **_BOUNDED)
@given(doc=documents().filter(lambda d: not (isinstance(d, dict) and "sector_identifier_uri" in d)))
@example(doc=_RESOURCES_IPV6)
def test_registration_answers_201_or_the_rfc7591_error_and_put_back_is_idempotent(env, doc):
    http = env.client()
    before = _clients(env)
    r = http.post("/oauth2/register", data=json.dumps(doc), content_type="application/json")
    event(str(r.status_code))
    assert r.status_code in (201, 400), (r.status_code, r.get_data(as_text=True)[:300])
    if r.status_code == 400:
        assert set(r.json) == {"error", "error_description"}
        assert r.json["error"] in ("invalid_client_metadata", "invalid_redirect_uri")
        assert _clients(env) == before
        return
    made = r.json
    stored = _clients(env)[made["client_id"]]
    check_client_metadata(json.loads(stored))  # the stored form passes the validator again
    auth = {"Authorization": f"Bearer {made['registration_access_token']}"}
    current = http.get(f"/oauth2/register/{made['client_id']}", headers=auth).json
    body = {
        k: v
        for k, v in current.items()
        if k
        not in (
            "registration_access_token",
            "registration_client_uri",
            "client_id_issued_at",
            "client_secret_expires_at",
        )
    }
    again = http.put(
        f"/oauth2/register/{made['client_id']}",
        data=json.dumps(body),
        content_type="application/json",
        headers=auth,
    )
    assert again.status_code == 200, again.get_data(as_text=True)
    assert _clients(env)[made["client_id"]] == stored
