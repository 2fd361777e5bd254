"""Each bad authorization request gets the right answer (RFC 6749 §3.1.2.4 and §4.1.2.1): an
error about the client or its redirect_uri is a page (never a redirect) that names the problem
and offers a way back; anything else, once the client and redirect_uri are verified, goes back
to the client with the right error code."""

from __future__ import annotations

import re

from oidc_support import RP, query
from support import store_keys

AUTHORIZE = "/oauth2/authorize"


def _main(resp) -> str:
    return resp.get_data(as_text=True).split('<main id="content"', 1)[1]


def _store_rows(svc) -> int:
    return len(store_keys(svc, "authreq:")) + len(store_keys(svc, "code:"))


def test_no_parameters_at_all_is_invalid_request_client_id_missing(env):
    before = _store_rows(env.svc)
    resp = env.client().get(AUTHORIZE)
    page = _main(resp)
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "invalid_request" in page and "client_id is missing" in page
    assert "unsupported_response_type" not in page
    # No dangling "…: " with an empty description.
    assert not re.search(r":\s*</p>", page)
    # The way back is the sign-in: there is no application to return to.
    assert 'id="back"' in page and 'href="/login"' in page
    assert _store_rows(env.svc) == before


def test_unknown_client_is_a_page_saying_the_application_is_unknown(env):
    resp = env.client().get(
        AUTHORIZE,
        query_string={
            "client_id": "nope",
            "redirect_uri": "https://evil.example/cb",
            "response_type": "code",
            "scope": "openid",
        },
    )
    page = _main(resp)
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "application that sent you here is not registered" in page
    # Never a link to the address the request brought.
    assert "evil.example" not in page and 'href="/login"' in page


def test_bad_redirect_uri_is_a_page_with_a_link_to_the_registered_origin_only(env):
    resp = env.client().get(
        AUTHORIZE,
        query_string={
            "client_id": "web",
            "redirect_uri": "https://evil.example/cb",
            "response_type": "code",
            "scope": "openid",
            "state": "s",
        },
    )
    page = _main(resp)
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "has not registered" in page
    assert "evil.example" not in page
    assert 'href="https://rp.example.org/"' in page and "Back to the application" in page


def test_missing_redirect_uri_with_two_registered_is_a_page(env):
    resp = env.client().get(
        AUTHORIZE, query_string={"client_id": "two", "response_type": "code", "scope": "openid"}
    )
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "redirect_uri is missing" in _main(resp)


def test_missing_response_type_with_valid_client_and_redirect_goes_back_to_the_client(env):
    before = _store_rows(env.svc)
    resp = env.client().get(
        AUTHORIZE,
        query_string={"client_id": "web", "redirect_uri": RP, "scope": "openid", "state": "z"},
    )
    assert resp.status_code in (302, 303)
    got = query(resp.headers["Location"])
    assert resp.headers["Location"].startswith(RP)
    assert got["error"] == "invalid_request"
    assert got["error_description"] == "response_type is missing"
    assert got["state"] == "z" and "code" not in got
    assert _store_rows(env.svc) == before


def test_unknown_response_type_goes_back_as_unsupported_response_type(env):
    resp = env.client().get(
        AUTHORIZE,
        query_string={
            "client_id": "web",
            "redirect_uri": RP,
            "scope": "openid",
            "response_type": "bogus",
            "state": "y",
        },
    )
    got = query(resp.headers["Location"])
    assert got["error"] == "unsupported_response_type" and got["state"] == "y"


def test_every_authorize_error_page_carries_a_reference_and_a_way_back(env):
    for params in ({}, {"client_id": "nope"}, {"client_id": "web", "redirect_uri": "x:y"}):
        page = _main(env.client().get(AUTHORIZE, query_string=params))
        assert re.search(r"<code>[^<]{6,}</code>", page), params
        assert 'id="back"' in page, params
