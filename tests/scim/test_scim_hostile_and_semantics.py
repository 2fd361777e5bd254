"""Refusals are SCIM errors (RFC 7644 §3.12) and change nothing: malformed and unknown-attribute
filters, wrong schema URNs, read-only attributes in a PATCH, stale ETags, tokens without the
scim scope, delegated visibility; and PATCH semantics: one transaction per PATCH (a failing
operation undoes the ones before it), add / replace / remove with and without paths."""

from __future__ import annotations

from api_kit import user_token
from login_kit import make_user
from scim_kit import ERROR, GROUP, USER, Scim, new_user, patch_op, scim_token
from sqlalchemy import func, select

from idp.storage.directory import Directory
from idp.storage.models import AuditEvent, Role, RolePermission, User


def _scim(app) -> Scim:
    return Scim(app, scim_token(app))


def _user(app, uuid: str) -> User | None:
    with app.extensions["idp"].sessions() as db:
        return db.scalar(select(User).where(User.uuid == uuid))


def _audit_count(app) -> int:
    with app.extensions["idp"].sessions() as db:
        return db.scalar(select(func.count()).select_from(AuditEvent))


def _is_error(resp, status: int, scim_type: str | None = None) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/scim+json"
    body = resp.json
    assert body["schemas"] == [ERROR] and body["status"] == str(status) and body["detail"]
    if scim_type:
        assert body["scimType"] == scim_type, body


def test_no_token_and_wrong_scope(app):
    s = Scim(app, "not-a-token")
    _is_error(s.get("/Users"), 401)
    assert "Bearer" in s.get("/Users").headers["WWW-Authenticate"]
    admin_only = Scim(app, _admin_scope_token(app))
    resp = admin_only.get("/Users")
    _is_error(resp, 403)
    assert 'scope="scim"' in resp.headers["WWW-Authenticate"]
    # Unauthenticated refusal comes before the body is read.
    _is_error(Scim(app, "x").post("/Users", "{not json"), 401)


def _admin_scope_token(app) -> str:
    from api_kit import service_token

    return service_token(app, scope="admin")


def test_unknown_path_and_method_are_scim_errors(app):
    s = _scim(app)
    _is_error(s.get("/Nothing"), 404)
    _is_error(s.call("DELETE", "/Users"), 405)
    _is_error(s.get("/Users/00000000-0000-0000-0000-000000000000"), 404)
    _is_error(s.get("/Groups/abc"), 404)
    _is_error(s.get("/Schemas/urn:nope"), 404)


def test_bad_filters_are_invalid_filter(app):
    s = _scim(app)
    for text in ['title eq "x"', 'userName eq "x', "userName zz 1", "active gt true", "()"]:
        _is_error(s.get("/Users", query_string={"filter": text}), 400, "invalidFilter")
    _is_error(s.get("/Groups", query_string={"filter": 'nickName eq "x"'}), 400, "invalidFilter")


def test_paging_parameters(app):
    s = _scim(app)
    for i in range(5):
        assert s.post("/Users", new_user(f"p{i}")).status_code == 201
    page = s.get("/Users?startIndex=2&count=2&sortBy=userName&sortOrder=descending").json
    assert page["startIndex"] == 2 and page["itemsPerPage"] == 2
    assert page["totalResults"] == 5
    assert [r["userName"] for r in page["Resources"]] == ["p3", "p2"]
    huge = s.get("/Users?count=100000000").json
    assert huge["itemsPerPage"] == 5  # cut to maxResults, not refused
    assert s.get("/Users?count=0").json["Resources"] == []
    assert s.get("/Users?startIndex=-4").json["startIndex"] == 1
    _is_error(s.get("/Users?count=many"), 400, "invalidValue")
    _is_error(s.get("/Users?sortBy=password"), 400)
    only = s.get("/Users?attributes=userName&count=1").json["Resources"][0]
    assert set(only) <= {"schemas", "id", "userName"}
    searched = s.post(
        "/Users/.search",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName sw "p"',
            "count": 2,
        },
    ).json
    assert searched["totalResults"] == 5 and len(searched["Resources"]) == 2


def test_wrong_schema_urn_is_refused_and_nothing_created(app):
    s = _scim(app)
    before = _audit_count(app)
    _is_error(s.post("/Users", {"schemas": ["urn:bogus"], "userName": "x1"}), 400)
    _is_error(s.post("/Users", {"schemas": [GROUP], "userName": "x1"}), 400)
    _is_error(s.post("/Users", "[1, 2]"), 400)
    _is_error(s.post("/Users", "{broken"), 400, "invalidSyntax")
    _is_error(s.post("/Users", new_user("x1"), headers={"Content-Type": "text/plain"}), 415)
    with app.extensions["idp"].sessions() as db:
        assert db.scalar(select(User).where(User.username == "x1")) is None
    assert _audit_count(app) == before


def test_patch_to_read_only_attributes_is_refused_and_nothing_changes(app):
    s = _scim(app)
    created = s.post("/Users", new_user("ro", displayName="Before")).json
    uid = created["id"]
    before = _audit_count(app)
    for op in (
        {"op": "replace", "path": "id", "value": "other"},
        {"op": "replace", "path": "meta.created", "value": "2000-01-01T00:00:00Z"},
        {"op": "add", "path": "groups", "value": [{"value": "1"}]},
        {"op": "replace", "value": {"id": "someone-else"}},
        {"op": "remove", "path": "userName"},  # required
        {"op": "explode", "path": "displayName", "value": "x"},
        {"op": "remove"},  # remove needs a path
    ):
        resp = s.patch(
            f"/Users/{uid}",
            patch_op({"op": "replace", "path": "displayName", "value": "After"}, op),
        )
        assert resp.status_code == 400, (op, resp.json)
        assert resp.json["schemas"] == [ERROR]
    row = _user(app, uid)
    assert row.display_name == "Before" and row.uuid == uid
    assert _audit_count(app) == before


def test_one_patch_is_one_transaction(app):
    s = _scim(app)
    uid = s.post("/Users", new_user("tx", displayName="Before")).json["id"]
    s.post("/Users", new_user("taken", emails=[{"value": "taken@ex.test", "type": "work"}]))
    resp = s.patch(
        f"/Users/{uid}",
        patch_op(
            {"op": "replace", "path": "displayName", "value": "After"},
            {"op": "replace", "path": 'emails[type eq "work"].value', "value": "taken@ex.test"},
        ),
    )
    _is_error(resp, 409, "uniqueness")
    assert _user(app, uid).display_name == "Before"  # the first operation was rolled back


def test_patch_paths_and_values(app):
    s = _scim(app)
    uid = s.post("/Users", new_user("pp")).json["id"]
    got = s.patch(
        f"/Users/{uid}",
        patch_op(
            {
                "op": "add",
                "value": {"name": {"givenName": "Ann", "familyName": "Lee"}, "nickName": "ignored"},
            },
            {
                "op": "add",
                "path": "phoneNumbers",
                "value": [{"value": "+49 30 1234", "type": "mobile"}],
            },
            {"op": "replace", "path": "locale", "value": "de-DE"},
        ),
    ).json
    assert got["name"]["givenName"] == "Ann" and got["locale"] == "de-DE"
    assert got["phoneNumbers"] == [{"value": "+49 30 1234", "type": "work"}]
    got = s.patch(
        f"/Users/{uid}",
        patch_op(
            {"op": "remove", "path": "name.givenName"}, {"op": "remove", "path": "phoneNumbers"}
        ),
    ).json
    assert got["name"] == {"familyName": "Lee"} and "phoneNumbers" not in got
    row = _user(app, uid)
    assert row.given_name is None and row.phone is None and row.family_name == "Lee"
    formatted = s.get(f"/Users/{uid}?attributes=name.formatted").json
    assert formatted["name"] == {"formatted": "Lee"}


def test_etags_and_if_match(app):
    s = _scim(app)
    created = s.post("/Users", new_user("etag"))
    uid, tag = created.json["id"], created.headers["ETag"]
    assert tag.startswith('W/"') and created.json["meta"]["version"] == tag
    got = s.get(f"/Users/{uid}")
    assert got.headers["ETag"] == tag
    assert s.get(f"/Users/{uid}", headers={"If-None-Match": tag}).status_code == 304
    changed = s.patch(
        f"/Users/{uid}",
        patch_op({"op": "replace", "path": "displayName", "value": "New"}),
        headers={"If-Match": tag},
    )
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    stale = s.patch(
        f"/Users/{uid}",
        patch_op({"op": "replace", "path": "displayName", "value": "Stale"}),
        headers={"If-Match": tag},
    )
    _is_error(stale, 412)
    _is_error(s.put(f"/Users/{uid}", new_user("etag"), headers={"If-Match": tag}), 412)
    _is_error(s.delete(f"/Users/{uid}", headers={"If-Match": tag}), 412)
    assert _user(app, uid).display_name == "New"
    # A membership change is a new version of the group and of the user.
    gid = s.post("/Groups", {"schemas": [GROUP], "displayName": "g"}).json["id"]
    user_tag = s.get(f"/Users/{uid}").headers["ETag"]
    s.patch(f"/Groups/{gid}", patch_op({"op": "add", "path": "members", "value": [{"value": uid}]}))
    assert s.get(f"/Users/{uid}").headers["ETag"] != user_tag


def test_deactivation_ends_sessions_and_is_audited(app):
    s = _scim(app)
    uid = s.post("/Users", new_user("deact")).json["id"]
    got = s.patch(f"/Users/{uid}", patch_op({"op": "replace", "path": "active", "value": False}))
    assert got.status_code == 200
    with app.extensions["idp"].sessions() as db:
        actions = list(db.scalars(select(AuditEvent.action).where(AuditEvent.target == uid)))
    assert "user.updated" in actions and "session.revoked" in actions


def test_group_member_must_be_a_user(app):
    s = _scim(app)
    resp = s.post(
        "/Groups",
        {"schemas": [GROUP], "displayName": "bad", "members": [{"value": "no-such-user"}]},
    )
    _is_error(resp, 400, "invalidValue")
    assert s.get('/Groups?filter=displayName eq "bad"').json["totalResults"] == 0
    assert s.post("/Groups", {"schemas": [GROUP], "displayName": "dup"}).status_code == 201
    _is_error(s.post("/Groups", {"schemas": [GROUP], "displayName": "dup"}), 409, "uniqueness")


def test_duplicate_username_is_uniqueness(app):
    s = _scim(app)
    assert s.post("/Users", new_user("twin")).status_code == 201
    _is_error(s.post("/Users", new_user("TWIN")), 409, "uniqueness")


def test_service_account_without_permission_is_403(app):
    from api_kit import service_token

    svc = app.extensions["idp"]
    with svc.sessions.begin() as db:
        role = Role(name="ScimOnly")
        db.add(role)
        db.flush()
        db.add(RolePermission(role_id=role.id, permission="oauth:scope:scim"))
    token = service_token(app, roles=("ScimOnly",), scope="scim")
    s = Scim(app, token)
    _is_error(s.get("/Users"), 403)
    _is_error(s.post("/Users", new_user("nope")), 403)
    _is_error(s.get("/Groups"), 403)


def test_delegated_admin_sees_and_changes_only_their_department(app):
    svc = app.extensions["idp"]
    make_user(svc, "lead", "Good-Password-123")
    make_user(svc, "inside", None)
    make_user(svc, "outside", None)
    with svc.sessions.begin() as db:
        d = Directory(db)
        acme = d.create_company("acme", "Acme")
        eng = d.create_department(acme, "Engineering")
        ops = d.create_department(acme, "Ops")
        d.place_user(d.user_by_username("lead"), department=eng)
        d.place_user(d.user_by_username("inside"), department=eng)
        d.place_user(d.user_by_username("outside"), department=ops)
        caller = d.create_role("ScimCaller")
        d.add_permission(caller, "oauth:scope:scim")
        d.add_permission(caller, "groups:groups:read")
        lead = d.user_by_username("lead")
        d.assign_role(lead, caller)
        d.assign_role(lead, d.role_by_name("User Manager"), scope_department=eng)
        outside_uuid = d.user_by_username("outside").uuid
        inside_uuid = d.user_by_username("inside").uuid
    s = Scim(app, user_token(app, "lead", "Good-Password-123", scope="openid scim"))
    names = {r["userName"] for r in s.get("/Users").json["Resources"]}
    assert names == {"lead", "inside"}
    assert s.get('/Users?filter=userName eq "outside"').json["totalResults"] == 0
    _is_error(s.get(f"/Users/{outside_uuid}"), 404)  # no existence leak
    _is_error(
        s.patch(
            f"/Users/{outside_uuid}",
            patch_op({"op": "replace", "path": "displayName", "value": "x"}),
        ),
        404,
    )
    _is_error(s.delete(f"/Users/{outside_uuid}"), 404)
    assert _user(app, outside_uuid).display_name is None
    ok = s.patch(
        f"/Users/{inside_uuid}", patch_op({"op": "replace", "path": "displayName", "value": "In"})
    )
    assert ok.status_code == 200 and _user(app, inside_uuid).display_name == "In"


def test_user_schema_urn_and_discovery(app):
    s = _scim(app)
    spc = s.get("/ServiceProviderConfig").json
    assert spc["patch"]["supported"] and spc["filter"]["supported"] and spc["etag"]["supported"]
    assert not spc["bulk"]["supported"] and not spc["changePassword"]["supported"]
    schema = s.get(f"/Schemas/{USER}").json
    names = {a["name"] for a in schema["attributes"]}
    assert {"userName", "name", "emails", "active", "groups"} <= names
    assert "password" not in names and "title" not in names
    groups = next(a for a in schema["attributes"] if a["name"] == "groups")
    assert groups["mutability"] == "readOnly"
    rt = s.get("/ResourceTypes/User").json
    assert rt["schemaExtensions"][0]["schema"].endswith("enterprise:2.0:User")
