"""The claims mapper: every source type and option, scopes (OIDC Core §5.4) and the claims
parameter (§5.5), per-client and per-SP overrides, SAML attributes, safe templates, and the
refusal of rules that would emit registered JWT claims."""

from __future__ import annotations

from datetime import date

import pytest
from identity_support import realm_fixture, sqlite_realm_fixture  # noqa: F401
from sqlalchemy import event, update

from idp.core import claims as core
from idp.errors import ValidationError
from idp.storage import claims as api
from idp.storage.clients import ClientRegistry
from idp.storage.directory import Directory, NewUser
from idp.storage.models import ClaimRule, SamlServiceProvider

SP = "https://sp.example.org/metadata"


def _subject() -> core.Subject:
    return core.Subject(
        attributes={
            "username": "ann",
            "given_name": "Ann",
            "family_name": "Lee",
            "email": "Ann@Example.org",
            "email_verified": True,
            "locale": "de-CH",
            "start_date": date(2029, 3, 1),
        },
        custom={"employee_no": "E-17", "badges": ["a", "b"]},
        groups=[("it", "staff/it"), ("vpn", "vpn")],
        ancestor_groups=[("staff", "staff")],
        roles=["Auditor", "editor"],
        client_roles={"app": ["admin"], "other": ["x"]},
        company=core.OrgName("Acme", {"de": "Acme AG"}, "acme"),
        department=core.OrgName("Platform", {"de": "Plattform"}),
        department_path=[core.OrgName("Engineering", {"de": "Technik"}), core.OrgName("Platform")],
        position=core.OrgName("Engineer", {"de-CH": "Ingenieurin", "de": "Ingenieur"}),
    )


def _map(rule: dict, client_id: str | None = "app"):
    parsed = core.parse_rule(rule)
    values = core.source_values(parsed, _subject(), client_id)
    return core.shape(parsed, core.formatted_values(parsed, values))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"source": {"type": "attribute", "name": "email"}}, "Ann@Example.org"),
        ({"source": {"type": "attribute", "name": "email"}, "case": "lower"}, "ann@example.org"),
        ({"source": {"type": "attribute", "name": "email_verified"}}, True),
        ({"source": {"type": "attribute", "name": "start_date"}}, "2029-03-01"),
        ({"source": {"type": "custom_field", "name": "employee_no"}}, "E-17"),
        ({"source": {"type": "custom_field", "name": "badges"}, "multi": True}, ["a", "b"]),
        ({"source": {"type": "custom_field", "name": "badges"}, "join": ";"}, "a;b"),
        ({"source": {"type": "groups"}, "multi": True}, ["it", "vpn"]),
        ({"source": {"type": "groups", "full_path": True}, "multi": True}, ["/staff/it", "/vpn"]),
        (
            {"source": {"type": "groups", "include_ancestors": True}, "multi": True},
            ["it", "staff", "vpn"],
        ),
        ({"source": {"type": "roles"}, "multi": True}, ["Auditor", "editor"]),
        (
            {"source": {"type": "roles", "include_client_roles": True}, "multi": True},
            ["Auditor", "admin", "editor"],
        ),
        ({"source": {"type": "client_roles"}, "multi": True}, ["admin"]),
        (
            {"source": {"type": "client_roles", "client": "other", "qualify": True}, "multi": True},
            ["other:x"],
        ),
        (
            {"source": {"type": "roles"}, "multi": True, "prefix": "ROLE_", "case": "upper"},
            ["ROLE_AUDITOR", "ROLE_EDITOR"],
        ),
        ({"source": {"type": "department"}}, "Platform"),
        ({"source": {"type": "department", "locale": "user"}}, "Plattform"),
        ({"source": {"type": "department_path"}}, "Engineering/Platform"),
        (
            {"source": {"type": "department_path", "separator": " > ", "locale": "de"}},
            "Technik > Platform",
        ),
        ({"source": {"type": "company"}}, "Acme"),
        ({"source": {"type": "company", "field": "slug"}}, "acme"),
        ({"source": {"type": "position", "locale": "user"}}, "Ingenieurin"),
        ({"source": {"type": "position", "locale": "de-AT"}}, "Ingenieur"),
        ({"source": {"type": "static", "value": "tenant-1"}}, "tenant-1"),
        ({"source": {"type": "static", "value": ["a", "b"]}, "multi": True}, ["a", "b"]),
        ({"source": {"type": "static", "value": "1"}, "value_type": "integer"}, 1),
        ({"source": {"type": "static", "value": "yes"}, "value_type": "boolean"}, True),
        (
            {"source": {"type": "template", "template": "{given_name} {family_name} ({company})"}},
            "Ann Lee (Acme)",
        ),
        (
            {"source": {"type": "template", "template": "{custom.employee_no}-{middle_name}x"}},
            "E-17-x",
        ),
    ],
)
def test_every_source_and_option(rule: dict, expected) -> None:
    assert _map({**rule, "target": "x"}) == expected


def test_client_roles_without_a_client_are_empty() -> None:
    assert _map({"target": "x", "source": {"type": "client_roles"}, "multi": True}, None) == []


@pytest.mark.parametrize(
    "template",
    [
        "{__class__}",
        "{given_name.__class__}",
        "{given_name.__class__.__mro__}",
        "{given_name[0]}",
        "{0}",
        "{}",
        "{given_name!r}",
        "{given_name:>99999999}",
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% for x in y %}",
        "{password_hash}",
        "{custom.__dict__}",
        "{given_name",
    ],
)
def test_template_escapes_fail(template: str) -> None:
    with pytest.raises(core.ClaimRuleError):
        core.parse_rule({"target": "x", "source": {"type": "template", "template": template}})


def test_template_output_is_plain_text_even_with_hostile_values() -> None:
    subject = _subject()
    subject.attributes["given_name"] = "{family_name.__class__}"
    rule = core.parse_rule(
        {"target": "x", "source": {"type": "template", "template": "{given_name}!"}}
    )
    assert core.source_values(rule, subject, None) == ["{family_name.__class__}!"]


@pytest.mark.parametrize(
    "target",
    sorted(core.REGISTERED_CLAIMS) + ["sub.inner", "exp.x"],
)
def test_registered_claim_targets_are_refused(target: str) -> None:
    with pytest.raises(core.ClaimRuleError, match="registered"):
        core.parse_rule({"target": target, "source": {"type": "static", "value": "x"}})


@pytest.mark.parametrize(
    "rule",
    [
        {"target": "x", "source": {"type": "attribute", "name": "password_hash"}},
        {"target": "x", "source": {"type": "attribute", "name": "__class__"}},
        {"target": "x", "source": {"type": "python", "code": "1"}},
        {"target": "x", "source": {"type": "static", "value": {"a": 1}}},
        {"target": "x", "source": {"type": "groups", "full_path": "yes"}},
        {"target": "x", "source": {"type": "static", "value": "v"}, "case": "title"},
        {"target": "x", "source": {"type": "static", "value": "v"}, "surprise": 1},
        {"source": {"type": "static", "value": "v"}},
        {"target": "", "source": {"type": "static", "value": "v"}},
        {"target": "a..b", "source": {"type": "static", "value": "v"}},
        "not an object",
    ],
)
def test_malformed_rules_are_refused(rule) -> None:
    with pytest.raises(core.ClaimRuleError):
        core.parse_rule(rule)


def test_nested_and_namespaced_targets() -> None:
    rules = [
        core.parse_rule(
            {"target": "address.locality", "source": {"type": "static", "value": "Bern"}}
        ),
        core.parse_rule({"target": "address.country", "source": {"type": "static", "value": "CH"}}),
        core.parse_rule(
            {
                "target": "https://example\\.com/roles",
                "source": {"type": "roles"},
                "multi": True,
            }
        ),
    ]
    out = core.map_oidc(rules, _subject(), scopes=[], client_id=None)
    assert out == {
        "address": {"locality": "Bern", "country": "CH"},
        "https://example.com/roles": ["Auditor", "editor"],
    }


def _user(db, clock) -> int:
    d = Directory(db, clock)
    acme = d.create_company("acme", "Acme", {"de": "Acme AG"})
    eng = d.create_department(acme, "Engineering", names={"de": "Technik"})
    plat = d.create_department(acme, "Platform", eng)
    pos = d.create_position(acme, "Engineer", {"de": "Ingenieur"})
    staff = d.create_group("staff")
    it = d.create_group("it", parent="staff")
    user = d.create_user(NewUser("ann", "ann@example.org", given_name="Ann", family_name="Lee"))
    user.email_verified = True
    user.locale = "de"
    user.phone = "+41790000000"
    d.place_user(user, department=plat, position=pos)
    d.add_member(it, user)
    d.assign_role(user, d.role_by_name("Auditor"))
    d.define_field("street_address", "Street")
    d.define_field("locality", "City")
    d.set_custom(user, {"street_address": "Main 1", "locality": "Bern"})
    ClientRegistry(db, None, None).create(
        "app", redirect_uris=["https://app.example.org/cb"], auth_method="none"
    )
    app_admin = d.create_role("admin", client_id="app")
    d.assign_group_role(staff, app_admin)
    db.add(SamlServiceProvider(entity_id=SP, metadata_xml="<md/>"))
    db.flush()
    return user.id


def test_default_rules_follow_the_scopes(realm):
    with realm.session() as db:
        uid = _user(db, realm.clock)
    with realm.session() as db:
        only_openid = api.oidc_claims(db, uid, client_id="app", scopes=["openid"])
        assert only_openid == {}
        claims = api.oidc_claims(
            db,
            uid,
            client_id="app",
            scopes=["openid", "profile", "email", "phone", "address", "groups", "roles"],
        )
    assert claims["name"] == "Ann Lee"
    assert claims["given_name"] == "Ann" and claims["family_name"] == "Lee"
    assert claims["preferred_username"] == "ann"
    assert claims["locale"] == "de"
    assert isinstance(claims["updated_at"], int)
    assert claims["email"] == "ann@example.org" and claims["email_verified"] is True
    assert claims["phone_number"] == "+41790000000"
    assert claims["phone_number_verified"] is False
    assert claims["address"] == {"street_address": "Main 1", "locality": "Bern"}
    assert claims["groups"] == ["it"]
    assert claims["roles"] == ["Auditor", "admin"]  # global + this client's roles
    assert "sub" not in claims and not set(claims) & core.REGISTERED_CLAIMS
    assert "middle_name" not in claims  # no value: omitted, never null


def test_claims_parameter_releases_individual_claims(sqlite_realm):
    with sqlite_realm.session() as db:
        uid = _user(db, sqlite_realm.clock)
    with sqlite_realm.session() as db:
        out = api.oidc_claims(
            db, uid, client_id="app", scopes=["openid"], claims_request={"email": None, "sub": None}
        )
    assert out == {"email": "ann@example.org"}


def test_per_client_rules_override_and_suppress_defaults(realm):
    with realm.session() as db:
        uid = _user(db, realm.clock)
        api.save_rule(
            db,
            {
                "target": "groups",
                "source": {"type": "groups", "full_path": True},
                "multi": True,
            },
            client_id="app",
            scope="groups",
        )
        api.save_rule(
            db,
            {"target": "email", "source": {"type": "static", "value": "x"}},
            client_id="app",
            scope="email",
            enabled=False,
        )
        api.save_rule(
            db,
            {"target": "department", "source": {"type": "department_path", "locale": "user"}},
            client_id="app",
            scope="org",
        )
    with realm.session() as db:
        app = api.oidc_claims(db, uid, client_id="app", scopes=["groups", "email", "org"])
        other = api.oidc_claims(db, uid, client_id=None, scopes=["groups", "email", "org"])
    # The disabled override removes only the default with that target (email).
    assert app == {
        "groups": ["/staff/it"],
        "department": "Technik/Platform",
        "email_verified": True,
    }
    assert other == {"groups": ["it"], "email": "ann@example.org", "email_verified": True}


def test_saml_attributes_from_the_same_rule_set(realm):
    with realm.session() as db:
        uid = _user(db, realm.clock)
    with realm.session() as db:
        attrs = {a.friendly_name: a for a in api.saml_attributes(db, uid, sp_entity_id=SP)}
    uri = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
    assert attrs["mail"] == core.SamlAttribute(
        "urn:oid:0.9.2342.19200300.100.1.3", uri, "mail", ["ann@example.org"]
    )
    assert attrs["givenName"].values == ["Ann"] and attrs["givenName"].name == "urn:oid:2.5.4.42"
    assert attrs["sn"].values == ["Lee"]
    assert attrs["displayName"].values == ["Ann Lee"]
    assert attrs["uid"].values == ["ann"]
    assert attrs["isMemberOf"].values == ["it"]
    assert attrs["isMemberOf"].name == "urn:oid:1.3.6.1.4.1.5923.1.5.1.1"
    assert attrs["Role"].values == ["Auditor"]  # no requesting OIDC client: global roles
    assert attrs["Role"].name_format.endswith(":basic")
    with realm.session() as db:
        api.save_rule(
            db,
            {
                "saml_name": "urn:oid:1.3.6.1.4.1.5923.1.5.1.1",
                "saml_friendly_name": "isMemberOf",
                "source": {"type": "groups", "full_path": True},
                "multi": True,
            },
            sp_entity_id=SP,
        )
        api.save_rule(
            db,
            {
                "saml_name": "department",
                "source": {"type": "department_path", "separator": ":"},
            },
            sp_entity_id=SP,
        )
    with realm.session() as db:
        attrs = {a.name: a for a in api.saml_attributes(db, uid, sp_entity_id=SP)}
        plain = {a.name: a for a in api.saml_attributes(db, uid, sp_entity_id="https://other")}
    assert attrs["urn:oid:1.3.6.1.4.1.5923.1.5.1.1"].values == ["/staff/it"]
    assert attrs["department"].values == ["Engineering:Platform"]
    assert attrs["department"].name_format.endswith(":basic")
    assert plain["urn:oid:1.3.6.1.4.1.5923.1.5.1.1"].values == ["it"]
    assert "department" not in plain


@pytest.mark.parametrize(
    "rule",
    [
        {"target": "sub", "source": {"type": "attribute", "name": "username"}},
        {"target": "aud", "source": {"type": "static", "value": "evil"}},
        {"target": "x", "source": {"type": "template", "template": "{{ ''.__class__ }}"}},
        {"target": "x", "source": {"type": "template", "template": "{__class__}"}},
        {"target": "x", "source": {"type": "attribute", "name": "password_hash"}},
    ],
)
def test_refused_rules_change_nothing(realm, rule):
    before = realm.count(ClaimRule)
    with realm.session() as db:
        with pytest.raises(ValidationError):
            api.save_rule(db, rule, scope="profile")
    assert realm.count(ClaimRule) == before


def test_rule_for_unknown_client_is_refused(sqlite_realm):
    from idp.errors import NotFound

    before = sqlite_realm.count(ClaimRule)
    with sqlite_realm.session() as db:
        with pytest.raises(NotFound):
            api.save_rule(
                db, {"target": "x", "source": {"type": "static", "value": "v"}}, client_id="nope"
            )
    assert sqlite_realm.count(ClaimRule) == before


def test_default_rules_are_seeded_once(sqlite_realm):
    before = sqlite_realm.count(ClaimRule)
    assert before == len(core.DEFAULT_RULES)
    with sqlite_realm.session() as db:
        assert api.seed_default_rules(db) == []
    assert sqlite_realm.count(ClaimRule) == before


# --- the per-worker rule cache -----------------------------------------------------------------


def _statements(svc):
    """SQL statements run on this worker's engine (to see whether rules were loaded again)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(svc.engine, "before_cursor_execute", record)
    return seen


def _names(svc, uid) -> dict[str, list[str]]:
    with svc.sessions() as db:
        return {a.name: a.values for a in api.saml_attributes(db, uid, sp_entity_id=SP)}


def test_rule_changes_made_by_another_worker_are_seen_at_once(realm):
    """Worker A caches the parsed rules; every change committed by worker B (create, edit,
    disable, delete, and the cascade of an SP's deletion) is visible to A's next request."""
    with realm.session() as db:
        uid = _user(db, realm.clock)
    worker_a, worker_b = realm.svc, realm.another_process()
    try:
        before = _names(worker_a, uid)
        assert "department" not in before
        seen = _statements(worker_a)
        assert _names(worker_a, uid) == before
        assert not [s for s in seen if "claim_rules" in s], "rules were not served from the cache"
        # The RBAC and the claims generations (both kept in rbac_state) in one read.
        assert len([s for s in seen if "rbac_state" in s]) == 1

        with worker_b.sessions.begin() as db:
            rule = api.save_rule(
                db, {"saml_name": "department", "source": {"type": "department"}}, sp_entity_id=SP
            )
            rule_id = rule.id
        assert _names(worker_a, uid)["department"] == ["Platform"]

        with worker_b.sessions.begin() as db:
            api.save_rule(
                db,
                {"saml_name": "department", "source": {"type": "static", "value": "R&D"}},
                sp_entity_id=SP,
                rule_id=rule_id,
            )
        assert _names(worker_a, uid)["department"] == ["R&D"]

        with worker_b.sessions.begin() as db:  # an ORM edit outside save_rule
            db.get(ClaimRule, rule_id).enabled = False
        assert "department" not in _names(worker_a, uid)

        with worker_b.sessions.begin() as db:
            db.get(ClaimRule, rule_id).enabled = True
        assert _names(worker_a, uid)["department"] == ["R&D"]

        with worker_b.sessions.begin() as db:
            api.delete_rule(db, rule_id)
        assert _names(worker_a, uid) == before

        # The SP's rules go with it by ON DELETE CASCADE; an SP registered again under the same
        # entityID must not get them back from a cache.
        with worker_b.sessions.begin() as db:
            api.save_rule(
                db, {"saml_name": "department", "source": {"type": "department"}}, sp_entity_id=SP
            )
        assert "department" in _names(worker_a, uid)
        with worker_b.sessions.begin() as db:
            db.delete(db.get(SamlServiceProvider, SP))
        with worker_b.sessions.begin() as db:
            db.add(SamlServiceProvider(entity_id=SP, metadata_xml="<md/>"))
        assert _names(worker_a, uid) == before
    finally:
        worker_b.engine.dispose()


def test_bulk_statements_on_rules_invalidate_the_cache(sqlite_realm):
    with sqlite_realm.session() as db:
        uid = _user(db, sqlite_realm.clock)
    worker_a, worker_b = sqlite_realm.svc, sqlite_realm.another_process()
    try:
        assert "urn:oid:0.9.2342.19200300.100.1.3" in _names(worker_a, uid)
        with worker_b.sessions.begin() as db:
            db.execute(update(ClaimRule).values(enabled=False))
        assert _names(worker_a, uid) == {}
    finally:
        worker_b.engine.dispose()


def test_an_uncommitted_rule_change_never_reaches_the_cache(sqlite_realm):
    with sqlite_realm.session() as db:
        uid = _user(db, sqlite_realm.clock)
    svc = sqlite_realm.svc
    before = _names(svc, uid)
    gen = None
    with svc.sessions() as db:
        gen = api.claims_generation(db)
        api.save_rule(db, {"saml_name": "x", "source": {"type": "static", "value": "v"}})
        # The transaction sees its own rule...
        assert "x" in {a.name for a in api.saml_attributes(db, uid, sp_entity_id=SP)}
        db.rollback()
    # ...but after the rollback neither the database nor any cache holds it.
    with svc.sessions() as db:
        assert api.claims_generation(db) == gen
    assert _names(svc, uid) == before


def test_a_pending_unflushed_rule_never_reaches_the_cache(sqlite_realm):
    with sqlite_realm.session() as db:
        uid = _user(db, sqlite_realm.clock)
    svc = sqlite_realm.svc
    before = _names(svc, uid)
    with svc.sessions() as db:
        db.add(ClaimRule(rule={"saml_name": "x", "source": {"type": "static", "value": "v"}}))
        assert "x" in {a.name for a in api.saml_attributes(db, uid, sp_entity_id=SP)}
        db.rollback()
    assert _names(svc, uid) == before


def test_membership_changes_by_another_worker_are_seen_at_once(realm):
    """Worker A keeps each user's groups and roles (the RBAC graph) between sign-ins; every
    membership or role change committed by worker B reaches A's next assertion, and an expired
    membership drops out at its expiry without any change being committed."""
    from datetime import timedelta

    from idp.storage.models import GroupMember

    with realm.session() as db:
        uid = _user(db, realm.clock)
    worker_a, worker_b = realm.svc, realm.another_process()
    groups = "urn:oid:1.3.6.1.4.1.5923.1.5.1.1"
    try:

        def memberships() -> list[str]:
            with worker_a.sessions() as db:
                claims = api.oidc_claims(
                    db,
                    uid,
                    client_id="app",
                    scopes=["openid", "groups", "roles"],
                    clock=realm.clock,
                )
            return sorted(claims.get("groups", [])) + sorted(claims.get("roles", []))

        assert memberships() == ["it", "Auditor", "admin"]
        seen = _statements(worker_a)
        assert memberships() == ["it", "Auditor", "admin"]
        assert not [s for s in seen if "group_members" in s], "graph not served from the cache"

        with worker_b.sessions.begin() as db:
            d = Directory(db, realm.clock)
            user = d.user_by_username("ann")
            d.add_member(
                d.create_group("vpn"), user, expires_at=realm.clock.utcnow() + timedelta(minutes=5)
            )
            d.assign_role(user, d.role_by_name("Administrator"))
        assert memberships() == ["it", "vpn", "Administrator", "Auditor", "admin"]
        assert groups in _names(worker_a, uid)

        realm.clock.advance(6 * 60)  # the temporary membership ends; nothing is committed
        assert memberships() == ["it", "Administrator", "Auditor", "admin"]

        with worker_b.sessions.begin() as db:  # a bulk statement outside the Directory
            db.execute(GroupMember.__table__.delete().where(GroupMember.user_id == uid))
        assert memberships() == ["Administrator", "Auditor"]
    finally:
        worker_b.engine.dispose()


def test_the_read_only_user_view_gives_the_same_subject_and_attributes(realm):
    """SAML SSO reads the user through idp.storage.userview (one Core statement): the subject
    and the released attributes are those of the ORM user, organization included, and the
    view has no password hash."""
    from idp.storage.models import User
    from idp.storage.userview import user_view

    with realm.session() as db:
        uid = _user(db, realm.clock)
        db.get(User, uid).password_hash = "secret-hash"
        db.add(
            ClaimRule(sp_entity_id=SP, rule={"saml_name": "dept", "source": {"type": "department"}})
        )
    with realm.session() as db:
        orm = db.get(User, uid)
        view = user_view(db, orm.uuid)
        assert view is not None and user_view(db, "no-such-uuid") is None
        assert (view.id, view.username, view.custom) == (uid, "ann", orm.custom)
        assert view.company.name == "Acme" and view.department.name == "Platform"
        assert view.position.names == {"de": "Ingenieur"}
        assert not hasattr(view, "password_hash")
        assert api.load_subject(db, uid, user=view) == api.load_subject(db, uid)
        by_view = api.saml_attributes(db, uid, sp_entity_id=SP, user=view)
        assert by_view == api.saml_attributes(db, uid, sp_entity_id=SP)
        assert ("dept", ["Platform"]) in [(a.name, a.values) for a in by_view]
