"""schemathesis against the OAuth 2.0 endpoints, in-process (WSGI): token, introspection,
revocation, userinfo (GET and POST), authorize (GET, no PAR) and registration, described by a
fixture document (tests/oidc/oauth_openapi.yaml, OpenAPI 3.1) that writes down what RFC 6749,
6750, 7009, 7591, 7662 and OIDC Core say the answers are. Valid and invalid requests, with and
without the client's or the user's credentials: never a 5xx, no status the document does not
list, and every answer matches its schema, content type and headers; every JSON 4xx is the
RFC 6749 §5.2 error object (``error`` and the optional members only, in their character set).
Bounded and seeded: the same examples on every run."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oidc_support import RP, authorize, build_env, pkce, token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

DOCUMENT = Path(__file__).with_name("oauth_openapi.yaml")
OPERATIONS = [
    ("/oauth2/token", "POST"),
    ("/oauth2/introspect", "POST"),
    ("/oauth2/revoke", "POST"),
    ("/oauth2/userinfo", "GET"),
    ("/oauth2/userinfo", "POST"),
    ("/oauth2/authorize", "GET"),
    ("/oauth2/register", "POST"),
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with build_env(tmp_path_factory, {}, oidc={"open_registration": True}) as built:
        verifier, challenge = pkce()
        http = built.client()
        code = authorize(http, code_challenge=challenge, code_challenge_method="S256")["code"]
        answer = token(
            http,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": RP,
                "code_verifier": verifier,
            },
            auth=("web", built.secrets["web"]),
        )
        assert answer.status_code == 200, answer.get_data(as_text=True)
        built.app.config["_user_token"] = answer.json["access_token"]
        yield built


@pytest.fixture(scope="module")
def schema(env):
    loaded = schemathesis.openapi.from_dict(yaml.safe_load(DOCUMENT.read_text()))
    loaded.app = env.app
    return loaded


def _credentials(env, path: str) -> dict[str, str]:
    """The caller's own credentials for the endpoint: the client's (HTTP Basic) at the
    back-channel endpoints, the user's access token at userinfo."""
    if path == "/oauth2/userinfo":
        return {"Authorization": f"Bearer {env.app.config['_user_token']}"}
    if path in ("/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"):
        raw = base64.b64encode(f"web:{env.secrets['web']}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}
    return {}


# GET /oauth2/userinfo takes one header, any string: there is no invalid request to generate.
CASES = [
    (path, method, mode)
    for path, method in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if (path, method, mode) != ("/oauth2/userinfo", "GET", GenerationMode.NEGATIVE)
]


@pytest.mark.parametrize(
    ("path", "method", "mode"), CASES, ids=[f"{m} {p} {g.value}" for p, m, g in CASES]
)
def test_oauth_endpoint_conforms(env, schema, path, method, mode):
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode), with_credentials=st.booleans())
    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case, with_credentials):
        headers = _credentials(env, path) if with_credentials else {}
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


# What the run above found: client input quoted in error_description outside RFC 6749 §5.2's
# characters (a repeated parameter's name, a registration's redirect URI).
NQSCHAR = re.compile(r"[\x20-\x21\x23-\x5B\x5D-\x7E]*")


def test_error_descriptions_stay_in_the_rfc6749_character_set(env):
    http = env.client()
    repeated = http.post(
        "/oauth2/token",
        data="%C3%8A=1&%C3%8A=1&grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
    )
    registered = http.post(
        "/oauth2/register", json={"redirect_uris": ["https://rp.example.org/\u5cae\\"]}
    )
    for answer, error in ((repeated, "invalid_request"), (registered, "invalid_redirect_uri")):
        assert answer.status_code == 400 and answer.json["error"] == error
        assert NQSCHAR.fullmatch(answer.json["error_description"]), answer.json
