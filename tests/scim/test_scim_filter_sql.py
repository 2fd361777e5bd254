"""SCIM filters (RFC 7644 §3.4.2.2) become SQL WHERE clauses: each operator, and / or / not
with their precedence, attribute paths (sub-attributes, value selections, the Enterprise
extension, meta), refusals with invalidFilter; and a property test: on generated users and
generated filters, the rows the database returns are exactly those scim2-models' own filter
evaluator (an independent implementation) accepts on the SCIM representation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scim2_models import InvalidFilterException, ScimFilter
from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session

import idp.storage.models  # noqa: F401  (every table on Base.metadata)
from idp.scim import filters
from idp.scim.mapping import Urls, user_resource
from idp.scim.models import FullUser
from idp.storage.db import Base
from idp.storage.models import Company, Department, Group, GroupMember, User

URLS = Urls("https://idp.test/scim/v2")
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _engine():
    engine = create_engine("sqlite://")

    @event.listens_for(engine, "connect")
    def _fk(conn, _rec):
        conn.execute("PRAGMA foreign_keys=ON")

    Base.metadata.create_all(engine)
    return engine


@pytest.fixture(scope="module")
def db():
    engine = _engine()
    with Session(engine) as s:
        acme = Company(slug="acme", name="Acme", names={})
        s.add(acme)
        s.flush()
        sales = Department(company_id=acme.id, name="Sales", names={}, path="acme/Sales")
        s.add(sales)
        s.flush()
        boss = User(
            username="boss",
            email="boss@acme.test",
            given_name="Big",
            custom={},
            created_at=T0 - timedelta(days=10),
            updated_at=T0 - timedelta(days=10),
        )
        s.add(boss)
        s.flush()
        rows = [
            User(
                username="bjensen",
                email="bjensen@example.com",
                given_name="Barbara",
                family_name="Jensen",
                display_name="Babs",
                external_id="EXT-1",
                locale="en-US",
                department_id=sales.id,
                manager_id=boss.id,
                custom={"employee_number": "701"},
                created_at=T0,
                updated_at=T0,
            ),
            User(
                username="jsmith",
                email="john.smith@work.test",
                given_name="John",
                family_name="Smith",
                phone="+1 555 0100",
                status="inactive",
                custom={},
                created_at=T0 + timedelta(days=1),
                updated_at=T0 + timedelta(days=2),
            ),
            User(
                username="Ann_Lee",
                family_name="Lee",
                external_id="ext-2",
                custom={},
                created_at=T0 + timedelta(days=3),
                updated_at=T0 + timedelta(days=3),
            ),
        ]
        s.add_all(rows)
        s.flush()
        staff = Group(name="staff", path="staff")
        s.add(staff)
        s.flush()
        s.add(GroupMember(group_id=staff.id, user_id=rows[0].id))
        s.commit()
        yield s


def names(db, text: str) -> set[str]:
    clause = filters.where(filters.USERS, text)
    return set(db.scalars(select(User.username).where(clause)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "BJENSEN"', {"bjensen"}),  # userName is caseExact false
        ('userName ne "bjensen"', {"boss", "jsmith", "Ann_Lee"}),
        ('userName co "SMI"', {"jsmith"}),
        ('userName sw "b"', {"bjensen", "boss"}),
        ('userName ew "lee"', {"Ann_Lee"}),
        ('userName co "%"', set()),  # LIKE wildcards are literal characters
        ('userName co "_"', {"Ann_Lee"}),
        ("phoneNumbers pr", {"jsmith"}),
        ("displayName pr", {"bjensen"}),
        ('userName gt "j"', {"jsmith"}),
        ('userName ge "jsmith"', {"jsmith"}),
        ('userName lt "b"', {"Ann_Lee"}),
        ('userName le "boss"', {"Ann_Lee", "bjensen", "boss"}),
        ('externalId eq "ext-1"', set()),  # externalId is caseExact
        ('externalId eq "EXT-1"', {"bjensen"}),
        ('externalId sw "ext"', {"Ann_Lee"}),
        ('externalId co "XT"', {"bjensen"}),
        ("active eq false", {"jsmith"}),
        ("active eq true", {"bjensen", "boss", "Ann_Lee"}),
        ('name.familyName eq "jensen"', {"bjensen"}),
        ('name.givenName sw "J"', {"jsmith"}),
        ('emails[type eq "work"].value eq "bjensen@example.com"', {"bjensen"}),
        ('emails[type eq "work" and value co "work.test"]', {"jsmith"}),
        ('emails.value ew "example.com"', {"bjensen"}),
        ('emails co "acme"', {"boss"}),
        ('emails[type eq "home"]', set()),
        ('meta.lastModified gt "2030-01-02T12:00:00Z"', {"jsmith", "Ann_Lee"}),
        ('meta.created le "2030-01-01T00:00:00Z"', {"bjensen", "boss"}),
        ('meta.created eq "2030-01-01T00:00:00Z"', {"bjensen"}),
        ('meta.resourceType eq "User"', {"bjensen", "boss", "jsmith", "Ann_Lee"}),
        ('groups.display eq "staff"', {"bjensen"}),
        ("groups pr", {"bjensen"}),
        (
            'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701"',
            {"bjensen"},
        ),
        (
            'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales"',
            {"bjensen"},
        ),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value pr",
            {"bjensen"},
        ),
        # and binds tighter than or; not applies to its parenthesised filter
        ('userName eq "boss" or userName sw "j" and active eq true', {"boss"}),
        ('(userName eq "boss" or userName sw "j") and active eq true', {"boss"}),
        ('not (userName sw "b")', {"jsmith", "Ann_Lee"}),
        # a missing value is not equal to anything: ne and not(eq) match it
        ('displayName ne "Babs"', {"boss", "jsmith", "Ann_Lee"}),
        ('not (displayName eq "Babs")', {"boss", "jsmith", "Ann_Lee"}),
        ("not (displayName pr)", {"boss", "jsmith", "Ann_Lee"}),
        ("displayName eq null", {"boss", "jsmith", "Ann_Lee"}),
        ('USERNAME Eq "boss"', {"boss"}),  # attribute names and operators ignore case
    ],
)
def test_filter_selects_in_sql(db, text, expected):
    assert names(db, text) == expected


def test_manager_value_is_the_managers_id(db):
    boss = db.scalar(select(User.uuid).where(User.username == "boss"))
    text = f'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "{boss}"'
    assert names(db, text) == {"bjensen"}


@pytest.mark.parametrize(
    "text",
    [
        'title eq "x"',  # a standard attribute this server does not keep
        'nickName eq "x"',
        "foo pr",
        'userName eq "x',  # unterminated string
        "userName eq",
        'userName regex "x"',
        "active gt true",  # ordering a boolean (RFC 7644 §3.4.2.2)
        '(userName eq "x"',
        'emails[type eq "work"',
        'urn:bogus:schema:userName eq "x"',
        'meta.lastModified gt "yesterday"',
        "x" * 5000,
    ],
)
def test_bad_filter_is_invalid_filter(text):
    with pytest.raises(InvalidFilterException):
        filters.where(filters.USERS, text)


def test_sql_not_python(db):
    """The translation is a SQL expression: the filter is in the compiled statement."""
    clause = filters.where(filters.USERS, 'userName eq "bjensen" and emails co "x"')
    sql = str(select(User.id).where(clause).compile(compile_kwargs={"literal_binds": True}))
    assert "lower(users.username) = 'bjensen'" in sql
    assert "LIKE" in sql


# --- the property test ---------------------------------------------------------------------------

WORDS = ["ann", "Ann", "bob", "b", "x", "lee", "Lee", "a_b", "%", "en"]
TEXT = st.one_of(st.none(), st.sampled_from(WORDS), st.text("abAB_%x", min_size=1, max_size=4))

USERS = st.lists(
    st.fixed_dictionaries(
        {
            "given_name": TEXT,
            "family_name": TEXT,
            "display_name": TEXT,
            "external_id": TEXT,
            "locale": TEXT,
            "email_local": TEXT,
            "inactive": st.booleans(),
        }
    ),
    min_size=1,
    max_size=6,
)

STRING_ATTRS = [
    "userName",
    "name.givenName",
    "name.familyName",
    "displayName",
    "externalId",
    "locale",
    "emails.value",
    "emails",
    'emails[type eq "work"].value',
]
OPS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]


def _leaf():
    string = st.builds(
        lambda a, o, v: f'{a} {o} "{v}"',
        st.sampled_from(STRING_ATTRS),
        st.sampled_from(OPS),
        st.sampled_from(WORDS + ["ann@x.test", "u0"]),
    )
    present = st.builds(lambda a: f"{a} pr", st.sampled_from(STRING_ATTRS[:-1]))
    boolean = st.builds(
        lambda o, v: f"active {o} {v}",
        st.sampled_from(["eq", "ne"]),
        st.sampled_from(["true", "false"]),
    )
    return st.one_of(string, present, boolean)


FILTERS = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"{a} and {b}", inner, inner),
        st.builds(lambda a, b: f"{a} or {b}", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
        st.builds(lambda a: f"({a})", inner),
    ),
    max_leaves=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=USERS, text=FILTERS)
def test_sql_agrees_with_scim2_models_evaluator(people, text):
    engine = _engine()
    with Session(engine) as s:
        for i, p in enumerate(people):
            s.add(
                User(
                    username=f"u{i}",
                    email=f"{p['email_local']}{i}@x.test" if p["email_local"] else None,
                    given_name=p["given_name"],
                    family_name=p["family_name"],
                    display_name=p["display_name"],
                    external_id=p["external_id"],
                    locale=p["locale"],
                    status="inactive" if p["inactive"] else "active",
                    custom={},
                )
            )
        s.flush()
        from_sql = set(s.scalars(select(User.username).where(filters.where(filters.USERS, text))))
        reference = ScimFilter[FullUser](text)
        from_python = {
            u.username
            for u in s.scalars(select(User))
            if reference.match(user_resource(s, u, URLS))
        }
    engine.dispose()
    assert from_sql == from_python, text
