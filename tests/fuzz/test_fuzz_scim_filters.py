"""SCIM filters (RFC 7644 §3.4.2.2, idp.scim.filters) over HTTP: generated filter strings (the
grammar with attributes the server keeps and does not keep, every operator, values of every
type and with escapes, nesting, then single-character mutations of those, and arbitrary text)
sent to /scim/v2/Users, /scim/v2/Groups and /scim/v2/.search with a service account's
``scim`` token. Each is a ListResponse (its totalResults within the directory's size) or 400
``invalidFilter`` as a SCIM error (§3.12); never a 5xx. Which users a filter selects is
checked against scim2-models' evaluator in tests/scim/test_scim_filter_sql.py."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from scim_kit import ERROR, GROUP, Scim, new_user, scim_token
from support import base_overrides, init_database

LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"

ATTRS = [
    "userName",
    "name.givenName",
    "name.familyName",
    "name.formatted",
    "displayName",
    "externalId",
    "id",
    "locale",
    "timezone",
    "active",
    "title",
    "nickName",
    "emails",
    "emails.value",
    "emails.type",
    "emails.primary",
    'emails[type eq "work"].value',
    "phoneNumbers.value",
    "groups",
    "groups.value",
    "groups.display",
    "members",
    "members.value",
    "meta.lastModified",
    "meta.created",
    "meta.resourceType",
    "urn:ietf:params:scim:schemas:core:2.0:User:userName",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    "urn:bogus:userName",
    "x",
    "userName.sub.sub",
    "emails[",
    "",
]
OPS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "regex"]
VALUES = st.sampled_from(
    [
        '"ann"',
        '"Ann"',
        '""',
        '"%"',
        '"_"',
        '"\\""',
        '"a\\\\b"',
        '"\\u00e9"',
        '"\u00e9\u4e2d"',
        '"2026-01-01T00:00:00Z"',
        '"2026-13-45T99:00:00Z"',
        '"yesterday"',
        "true",
        "false",
        "null",
        "0",
        "-1",
        "1.5",
        "1e400",
        "99999999999999999999999",
        '"x',
        "'x'",
    ]
)


def _leaf():
    compare = st.builds(
        lambda a, o, v: f"{a} {o} {v}", st.sampled_from(ATTRS), st.sampled_from(OPS), VALUES
    )
    present = st.builds(lambda a: f"{a} pr", st.sampled_from(ATTRS))
    return compare | present


GRAMMAR = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"{a} and {b}", inner, inner),
        st.builds(lambda a, b: f"{a} or {b}", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
        st.builds(lambda a: f"({a})", inner),
        st.builds(lambda a, b: f"emails[{b}] and {a}", inner, _leaf()),
    ),
    max_leaves=6,
)


@st.composite
def mutated(draw) -> str:
    text = draw(GRAMMAR)
    at = draw(st.integers(0, len(text)))
    how = draw(st.integers(0, 2))
    if how == 0:
        return text[:at] + text[at + 1 :]
    ch = draw(st.sampled_from(list('()[]"\\ .:') + ["\x00", "\u2028", "\ufffd"]))
    return text[:at] + ch + text[at + (how == 2) :]


FILTERS = st.one_of(GRAMMAR, GRAMMAR, mutated(), st.text(max_size=40))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def scim(request, tmp_path):
    """A directory of three users and a group, on SQLite and on PostgreSQL (where a value of
    the wrong type or range is the database's error, not only the parser's)."""
    from idp.app import create_app

    instance = tmp_path / "instance"
    instance.mkdir()
    overrides = base_overrides(instance)
    if request.param == "postgresql":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    init_database(overrides)
    app = create_app(overrides)
    app.config["TESTING"] = True
    caller = Scim(app, scim_token(app))
    for name, extra in (
        (
            "ann",
            {"name": {"givenName": "Ann"}, "emails": [{"value": "ann@x.test", "type": "work"}]},
        ),
        ("bob", {"active": False, "externalId": "e-1"}),
        ("chloe", {"displayName": "Chloé 中"}),
    ):
        assert caller.post("/Users", new_user(name, **extra)).status_code == 201
    assert caller.post("/Groups", {"schemas": [GROUP], "displayName": "staff"}).status_code == 201
    yield caller
    app.extensions["idp"].engine.dispose()


def _check(r, most: int) -> None:
    assert r.status_code in (200, 400), (r.status_code, r.get_data(as_text=True)[:300])
    body = r.get_json()
    if r.status_code == 400:
        assert body["schemas"] == [ERROR] and body["status"] == "400"
        assert body["scimType"] == "invalidFilter", body
        event("invalidFilter")
        return
    event("ListResponse")
    assert body["schemas"] == [LIST]
    assert 0 <= body["totalResults"] <= most and len(body["Resources"]) <= body["totalResults"]


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=FILTERS, where=st.sampled_from(["/Users", "/Groups", "/.search"]))
@example(text='userName eq "\\u00e9"', where="/Users")
def test_a_filter_is_a_list_or_invalid_filter(scim, text, where):
    if where == "/.search":
        r = scim.post("/.search", {"schemas": [SEARCH], "filter": text})
        most = 5  # every user and group, the service account's own among them
    else:
        r = scim.get(where, query_string={"filter": text})
        most = 4 if where == "/Users" else 1
    _check(r, most)
