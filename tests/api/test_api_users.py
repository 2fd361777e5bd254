"""``/api/v1/users``: every operation with a real token through the real app, and the hostile
cases: no token (401), no scope (403), a caller without the permission (403, nothing changed),
mass assignment and unknown fields (400 naming the field, nothing changed), malformed JSON (400),
a stale If-Match (412, nothing changed), a duplicate e-mail (409)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from api_kit import api, service_token, user_token
from directory_api_kit import snapshot
from login_kit import GOOD, login, make_user, outbox
from mfa_kit import enrol_totp, mfa_counts
from sqlalchemy import select

from idp.storage.directory import Directory
from idp.storage.models import AuditEvent, User

PROBLEM = "application/problem+json"
BASE = "/api/v1/users"
NEW_PASSWORD = "Fresh-Start-Password-77"


@pytest.fixture
def admin(app):
    return service_token(app)


@pytest.fixture
def people(svc):
    """acme (Engineering, Sales; position Engineer), globex; ann and bob in acme/Engineering
    (bob reports to ann), cid in globex; group staff/it with ann. Their uuids by name."""
    with svc.sessions.begin() as db:
        d = Directory(db)
        acme = d.create_company("acme", "Acme")
        globex = d.create_company("globex", "Globex")
        eng = d.create_department(acme, "Engineering")
        d.create_department(acme, "Sales")
        d.create_position(acme, "Engineer")
        d.create_group("staff")
        d.create_group("it", "staff")
    make_user(
        svc,
        "ann",
        given_name="Ann",
        family_name="Archer",
        start_date=date(2020, 1, 1),
        email_verified=True,
    )
    make_user(svc, "bob", family_name="Baker", end_date=date(2021, 1, 1))
    make_user(svc, "cid", family_name="Cole", start_date=date(2099, 1, 1))
    with svc.sessions.begin() as db:
        d = Directory(db)
        ann, bob, cid = (d.user_by_username(n) for n in ("ann", "bob", "cid"))
        d.place_user(ann, department=d.department(eng.id))
        d.place_user(bob, department=d.department(eng.id), manager=ann)
        d.place_user(cid, company=d.company(globex.id))
        d.add_member(d.group_by_path("staff/it"), ann)
        return {u.username: u.uuid for u in (ann, bob, cid)}


def problem(resp, status: int) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    body = resp.json
    assert body["status"] == status and body["title"] and body["type"]
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


def user_row(svc, username: str) -> User | None:
    with svc.sessions() as db:
        user = db.scalar(select(User).where(User.username == username))
        if user is not None:
            db.expunge(user)
        return user


def last_audit(svc) -> AuditEvent:
    with svc.sessions() as db:
        return db.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()


def patch(client, token, uuid, body, **kw):
    headers = {"Content-Type": kw.pop("content_type", "application/merge-patch+json")}
    headers.update(kw.pop("headers", {}))
    raw = body if isinstance(body, str | bytes) else json.dumps(body)
    return api(client, "PATCH", f"{BASE}/{uuid}", token, data=raw, headers=headers)


# Every operation: (method, path template, JSON body or None).
OPS = [
    ("GET", BASE, None),
    ("POST", BASE, {"username": "zed", "email": "zed@example.org"}),
    ("GET", BASE + "/{id}", None),
    ("PATCH", BASE + "/{id}", {"given_name": "X"}),
    ("DELETE", BASE + "/{id}", None),
    ("POST", BASE + "/{id}/lock", None),
    ("POST", BASE + "/{id}/unlock", None),
    ("POST", BASE + "/{id}/force-password-change", None),
    ("POST", BASE + "/{id}/password", {"password": NEW_PASSWORD}),
    ("POST", BASE + "/{id}/reset-mfa", None),
    ("GET", BASE + "/{id}/sessions", None),
    ("DELETE", BASE + "/{id}/sessions", None),
    ("GET", BASE + "/{id}/roles", None),
    ("POST", BASE + "/{id}/roles", {"role": "Auditor"}),
    ("DELETE", BASE + "/{id}/roles/Auditor", None),
    ("GET", BASE + "/{id}/permissions", None),
]
_IDS = [f"{m} {p}" for m, p, _ in OPS]


def call_op(client, token, method, path, body, uuid):
    kw = {}
    if body is not None:
        kw["json"] = body
    return api(client, method, path.format(id=uuid), token, **kw)


def test_every_operation_is_in_the_openapi_document(client):
    doc = client.get("/api/v1/openapi.json").json
    for method, path, _ in OPS:
        templ = path.replace("{id}", "{user_id}").replace("/Auditor", "/{role}")
        assert method.lower() in doc["paths"][templ], (method, templ)
    schema = doc["components"]["schemas"]["UserOut"]
    assert "password_hash" not in schema["properties"]
    assert schema["properties"]["id"]["description"]
    create = doc["components"]["schemas"]["UserCreate"]
    assert create["additionalProperties"] is False


@pytest.mark.parametrize(("method", "path", "body"), OPS, ids=_IDS)
def test_no_token_is_401(client, people, method, path, body):
    resp = client.open(path.format(id=people["ann"]), method=method, json=body)
    problem(resp, 401)
    assert resp.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body"), OPS, ids=_IDS)
def test_token_without_admin_scope_is_403(app, client, svc, people, method, path, body):
    token = service_token(app, scope="scim")
    before = snapshot(svc)
    resp = call_op(client, token, method, path, body, people["ann"])
    problem(resp, 403)
    assert "insufficient_scope" in resp.headers["WWW-Authenticate"]
    assert snapshot(svc) == before


# (operation index, a role template that lacks its permission, the permission named)
REFUSED = [
    (0, "Auditor", None),  # Auditor reads: allowed, skipped below
    (1, "Helpdesk", "users:accounts:create"),
    (3, "Helpdesk", "users:accounts:update"),
    (4, "Helpdesk", "users:accounts:delete"),
    (5, "Helpdesk", "users:accounts:update"),
    (6, "Auditor", "users:lockout:unlock"),
    (7, "Auditor", "users:password:reset"),
    (8, "Auditor", "users:password:reset"),
    (9, "Auditor", "users:mfa:reset"),
    (11, "Auditor", "users:sessions:revoke"),
    (13, "Helpdesk", "users:roles:assign"),
    (14, "Helpdesk", "users:roles:assign"),
    (15, "Helpdesk", "users:roles:read"),
]


@pytest.mark.parametrize(
    ("index", "role", "permission"), REFUSED[1:], ids=[_IDS[r[0]] for r in REFUSED[1:]]
)
def test_caller_without_the_permission_is_403_and_nothing_changes(
    app, client, svc, people, index, role, permission
):
    token = service_token(app, roles=(role,))
    method, path, body = OPS[index]
    before = snapshot(svc)
    resp = call_op(client, token, method, path, body, people["ann"])
    assert permission in problem(resp, 403)["detail"]
    assert snapshot(svc) == before


def test_read_only_callers_may_read(app, client, people):
    token = service_token(app, roles=("Auditor",))
    for method, path, body in (OPS[0], OPS[2], OPS[10], OPS[12], OPS[15]):
        resp = call_op(client, token, method, path, body, people["ann"])
        assert resp.status_code == 200, (path, resp.json)


@pytest.mark.parametrize(("method", "path", "body"), OPS[2:], ids=_IDS[2:])
def test_unknown_user_is_404_problem(client, admin, svc, people, method, path, body):
    before = snapshot(svc)
    problem(call_op(client, admin, method, path, body, "00000000-0000-4000-8000-000000000000"), 404)
    problem(call_op(client, admin, method, path, body, "../../etc"), 404)
    assert snapshot(svc) == before


# --- list ----------------------------------------------------------------------------------------


def listed(client, token, **query) -> list[str]:
    resp = api(client, "GET", BASE, token, query_string=query)
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert set(body) == {"items", "total", "page", "per_page"}
    return [u["username"] for u in body["items"]]


def test_list_filters_sorting_and_pages(client, admin, svc, people):
    everyone = ["ann", "bob", "cid"]
    assert listed(client, admin) == everyone
    assert listed(client, admin, q="ARCH") == ["ann"]
    assert listed(client, admin, company="acme") == ["ann", "bob"]
    assert listed(client, admin, department="acme/Engineering") == ["ann", "bob"]
    assert listed(client, admin, department="acme/Sales") == []
    assert listed(client, admin, group="staff") == ["ann"]
    assert listed(client, admin, employment="past") == ["bob"]
    assert listed(client, admin, employment="future") == ["cid"]
    make_user(svc, "dan")
    everyone = [*everyone, "dan"]
    assert listed(client, admin, employment="none") == ["dan"]
    assert listed(client, admin, employment="current") == ["ann", "dan"]
    assert listed(client, admin, status="active") == everyone
    assert listed(client, admin, sort="-username") == everyone[::-1]
    assert listed(client, admin, sort="family_name") == ["ann", "bob", "cid", "dan"]
    page = api(client, "GET", BASE, admin, query_string={"per_page": 10, "page": 1}).json
    assert page["total"] == 4 and page["per_page"] == 10 and page["page"] == 1
    empty = api(client, "GET", BASE, admin, query_string={"page": 2}).json
    assert empty["items"] == [] and empty["total"] == 4
    bob = next(u for u in api(client, "GET", BASE, admin).json["items"] if u["username"] == "bob")
    assert bob["manager_id"] == people["ann"] and bob["company"] == "acme"
    assert "password_hash" not in bob


@pytest.mark.parametrize(
    "query",
    [
        {"per_page": "7"},
        {"sort": "password_hash"},
        {"status": "zombie"},
        {"employment": "soon"},
        {"page": "0"},
        {"is_admin": "1"},
    ],
)
def test_list_bad_query_is_400_naming_it(client, admin, query):
    body = problem(api(client, "GET", BASE, admin, query_string=query), 400)
    assert next(iter(query)) in json.dumps(body["errors"])


# --- create --------------------------------------------------------------------------------------


def test_create_with_everything(client, admin, svc, people):
    with svc.sessions.begin() as db:
        Directory(db).define_field("badge", "Badge", type="integer")
    body = {
        "username": "dora",
        "email": "Dora@Example.org",
        "email_verified": True,
        "given_name": "Dora",
        "family_name": "Diaz",
        "display_name": "Dora D.",
        "phone": "+49 30 555",
        "locale": "de",
        "timezone": "Europe/Berlin",
        "color": "#336699",
        "start_date": "2024-02-01",
        "end_date": "2031-12-31",
        "password": NEW_PASSWORD,
        "must_change_password": True,
        "require_mfa": True,
        "groups": ["staff/it"],
        "roles": ["Auditor"],
        "custom": {"badge": "12"},
        "company": "acme",
        "department": "acme/Engineering",
        "position": "Engineer",
        "manager_id": people["ann"],
    }
    resp = api(client, "POST", BASE, admin, json=body)
    assert resp.status_code == 201, resp.json
    out = resp.json
    assert resp.headers["Location"] == f"{BASE}/{out['id']}"
    assert "password" not in out and "password_hash" not in out
    assert out["email"] == "dora@example.org" and out["email_verified"] is True
    assert out["password_set"] and out["must_change_password"] and out["require_mfa"]
    assert (out["company"], out["department"], out["position"]) == (
        "acme",
        "Engineering",
        "Engineer",
    )
    assert out["manager_id"] == people["ann"] and out["custom"] == {"badge": 12}
    assert (out["phone"], out["locale"], out["timezone"], out["color"]) == (
        "+49 30 555",
        "de",
        "Europe/Berlin",
        "#336699",
    )
    got = api(client, "GET", resp.headers["Location"], admin)
    assert got.status_code == 200 and got.json == out
    row = user_row(svc, "dora")
    assert svc.password_hasher.verify(NEW_PASSWORD, row.password_hash)[0]
    assert listed(client, admin, group="staff/it") == ["ann", "dora"]
    roles = api(client, "GET", f"{BASE}/{out['id']}/roles", admin).json["items"]
    assert [r["role"] for r in roles] == ["Auditor"]


def test_create_minimal_lets_the_user_set_a_password(client, admin, svc):
    resp = api(client, "POST", BASE, admin, json={"username": "eve", "email": "eve@example.org"})
    assert resp.status_code == 201
    assert resp.json["password_set"] is False and resp.json["email_verified"] is False
    assert resp.json["status"] == "active"


@pytest.mark.parametrize(
    ("extra", "field", "status"),
    [
        # not what the schema allows: 400 naming the field
        ({"id": "6d1f0000-0000-4000-8000-000000000000"}, "id", 400),
        ({"uuid": "x"}, "uuid", 400),
        ({"password_hash": "$argon2id$..."}, "password_hash", 400),
        ({"is_admin": True}, "is_admin", 400),
        ({"status": "active"}, "status", 400),
        ({"source": "ldap"}, "source", 400),
        ({"username": "bad name"}, "username", 400),
        ({"email": "no-at-sign"}, "email", 400),
        ({"timezone": "Mars/Olympus"}, "timezone", 400),
        ({"color": "red"}, "color", 400),
        ({"given_name": "a\u0000b"}, "given_name", 400),
        ({"email_verified": "yes"}, "email_verified", 400),
        ({"password": ""}, "password", 400),
        # well-formed, but naming nothing that exists: 404 naming the field
        ({"roles": ["Nope"]}, "roles", 404),
        ({"groups": ["nope/nope"]}, "groups", 404),
        ({"company": "nope"}, "company", 404),
        ({"company": "\u00b2"}, "company", 404),
        ({"department": "99999999999999999999999"}, "department", 404),
        ({"department": "acme/Nope"}, "department", 404),
        ({"manager_id": "nobody"}, "manager_id", 404),
        ({"custom": {"shoe_size": 42}}, "custom", 404),
        # well-formed, refused by the data or the rules: 409 naming the field
        ({"password": "short"}, "password", 409),
        ({"start_date": "2030-01-01", "end_date": "2020-01-01"}, "end_date", 409),
        ({"email": None, "email_verified": True}, "email_verified", 409),
        ({"company": "globex", "department": "acme/Engineering"}, "department", 409),
    ],
)
def test_create_refusals_name_the_field(client, admin, svc, people, extra, field, status):
    before = snapshot(svc)
    body = {"username": "mal", "email": "mal@example.org", **extra}
    resp = api(client, "POST", BASE, admin, json=body)
    assert field in problem(resp, status)["detail"]
    assert snapshot(svc) == before


def test_create_duplicates_are_409(client, admin, svc, people):
    before = snapshot(svc)
    dup_mail = api(
        client, "POST", BASE, admin, json={"username": "ann2", "email": "ANN@example.org"}
    )
    assert "ann@example.org" in problem(dup_mail, 409)["detail"]
    dup_name = api(client, "POST", BASE, admin, json={"username": "Ann", "email": "x@example.org"})
    problem(dup_name, 409)
    assert snapshot(svc) == before


def test_a_user_manager_cannot_hand_out_administrator(app, client, svc):
    token = service_token(app, roles=("User Manager",))
    before = snapshot(svc)
    resp = api(
        client,
        "POST",
        BASE,
        token,
        json={"username": "boss", "email": "b@example.org", "roles": ["Administrator"]},
    )
    problem(resp, 403)
    assert snapshot(svc) == before


# --- read, patch, delete -----------------------------------------------------------------------


def test_read_has_etag(client, admin, people):
    resp = api(client, "GET", f"{BASE}/{people['ann']}", admin)
    assert resp.status_code == 200 and resp.headers["ETag"].startswith('"')
    assert resp.json["id"] == people["ann"] and resp.json["given_name"] == "Ann"


def test_patch_merge_semantics(client, admin, svc, people):
    uuid = people["ann"]
    tag = api(client, "GET", f"{BASE}/{uuid}", admin).headers["ETag"]
    resp = patch(
        client,
        admin,
        uuid,
        {"given_name": "Annie", "family_name": None, "locale": "fr", "email": "annie@example.org"},
        headers={"If-Match": tag},
    )
    assert resp.status_code == 200, resp.json
    out = resp.json
    assert (out["given_name"], out["family_name"], out["locale"]) == ("Annie", None, "fr")
    assert out["email"] == "annie@example.org" and out["email_verified"] is False
    assert out["start_date"] == "2020-01-01"  # left out: unchanged
    assert resp.headers["ETag"] != tag
    event = last_audit(svc)
    assert event.action == "user.updated" and event.target == uuid
    assert event.details["fields"] == [
        "email",
        "email_verified",
        "family_name",
        "given_name",
        "locale",
    ]
    # application/json is accepted as well
    resp = patch(client, admin, uuid, {"active": False}, content_type="application/json")
    assert resp.status_code == 200 and resp.json["status"] == "inactive"
    # placement: moving to another company drops the old department
    resp = patch(client, admin, uuid, {"company": "globex"})
    assert (resp.json["company"], resp.json["department"]) == ("globex", None)


def test_patch_stale_if_match_is_412_and_changes_nothing(client, admin, svc, people):
    uuid = people["ann"]
    old = api(client, "GET", f"{BASE}/{uuid}", admin).headers["ETag"]
    assert patch(client, admin, uuid, {"given_name": "Anna"}).status_code == 200
    before = snapshot(svc)
    resp = patch(client, admin, uuid, {"given_name": "Stale"}, headers={"If-Match": old})
    problem(resp, 412)
    assert snapshot(svc) == before
    assert user_row(svc, "ann").given_name == "Anna"
    gone = api(client, "DELETE", f"{BASE}/{uuid}", admin, headers={"If-Match": old})
    problem(gone, 412)
    assert snapshot(svc) == before


@pytest.mark.parametrize(
    "field",
    [
        "id",
        "uuid",
        "password_hash",
        "is_admin",
        "roles",
        "groups",
        "status",
        "password",
        "nonsense",
    ],
)
def test_patch_mass_assignment_is_400_naming_the_field(client, admin, svc, people, field):
    before = snapshot(svc)
    resp = patch(client, admin, people["ann"], {"given_name": "Mallory", field: "x"})
    body = problem(resp, 400)
    assert field in body["detail"] and any(e["field"] == field for e in body["errors"])
    assert snapshot(svc) == before


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        ("{not json", "application/merge-patch+json", 400),
        ('{"given_name": "x",}', "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ("", "application/json", 400),
        ('{"given_name": "x"}', "text/plain", 415),
        ('{"email_verified": "yes"}', "application/json", 400),
        ('{"username": null}', "application/json", 400),
        ('{"custom": {"nope": 1}}', "application/json", 404),
        ('{"active": null}', "application/json", 400),
        ('{"timezone": "Nowhere/Town"}', "application/json", 400),
    ],
)
def test_patch_malformed_bodies(client, admin, svc, people, raw, content_type, status):
    before = snapshot(svc)
    problem(patch(client, admin, people["ann"], raw, content_type=content_type), status)
    assert snapshot(svc) == before


def test_patch_duplicate_email_is_409_and_changes_nothing(client, admin, svc, people):
    before = snapshot(svc)
    problem(patch(client, admin, people["ann"], {"email": "bob@example.org"}), 409)
    assert snapshot(svc) == before


def test_delete(client, admin, svc, people):
    uuid = people["ann"]
    tag = api(client, "GET", f"{BASE}/{uuid}", admin).headers["ETag"]
    resp = api(client, "DELETE", f"{BASE}/{uuid}", admin, headers={"If-Match": tag})
    assert resp.status_code == 204 and resp.data == b""
    problem(api(client, "GET", f"{BASE}/{uuid}", admin), 404)
    assert user_row(svc, "ann") is None
    assert user_row(svc, "bob").manager_id is None
    assert last_audit(svc).action == "user.deleted"


def test_nobody_deletes_or_locks_themselves(app, client, svc):
    make_user(svc, "root2", password=GOOD)
    with svc.sessions.begin() as db:
        d = Directory(db)
        root = d.user_by_username("root2")
        d.assign_role(root, d.role_by_name("Administrator"))
        uuid = root.uuid
    token = user_token(app, "root2", GOOD)
    before = snapshot(svc)
    problem(api(client, "DELETE", f"{BASE}/{uuid}", token), 409)
    problem(api(client, "POST", f"{BASE}/{uuid}/lock", token), 409)
    assert snapshot(svc) == before


# --- account actions ---------------------------------------------------------------------------


def test_lock_and_unlock(app, client, admin, svc, people):
    uuid = people["ann"]
    resp = api(client, "POST", f"{BASE}/{uuid}/lock", admin)
    assert resp.status_code == 200 and resp.json["status"] == "locked"
    assert listed(client, admin, status="locked") == ["ann"]
    # A locked account cannot sign in.
    page = login(app.test_client(), "ann", GOOD)
    assert "locked" in page.get_data(as_text=True)
    ann_id = user_row(svc, "ann").id
    svc.store.put(f"lock:u{ann_id}", {"at": 1}, 600)  # a lockout after failed sign-ins
    helpdesk = service_token(app, roles=("Helpdesk",))
    resp = api(client, "POST", f"{BASE}/{uuid}/unlock", helpdesk)
    assert resp.status_code == 200 and resp.json["status"] == "active"
    assert svc.store.get(f"lock:u{ann_id}") is None
    assert last_audit(svc).action == "user.unlocked"


def test_passwords(app, client, svc, people):
    helpdesk = service_token(app, roles=("Helpdesk",))
    uuid = people["ann"]
    resp = api(
        client,
        "POST",
        f"{BASE}/{uuid}/password",
        helpdesk,
        json={"password": NEW_PASSWORD, "temporary": True},
    )
    assert resp.status_code == 204
    row = user_row(svc, "ann")
    assert svc.password_hasher.verify(NEW_PASSWORD, row.password_hash)[0]
    assert row.must_change_password is True
    before = snapshot(svc)
    for bad, code in (
        ("short", "min_length"),
        ("Ann-Archer-Password-1", "personal"),
        (NEW_PASSWORD, "history"),
    ):
        resp = api(client, "POST", f"{BASE}/{uuid}/password", helpdesk, json={"password": bad})
        detail = problem(resp, 409)["detail"]
        assert code in detail and "password" in detail
    problem(
        api(
            client, "POST", f"{BASE}/{uuid}/password", helpdesk, json={"password": "x", "hash": "y"}
        ),
        400,
    )
    assert snapshot(svc) == before
    with svc.sessions.begin() as db:
        db.get(User, row.id).must_change_password = False
    resp = api(client, "POST", f"{BASE}/{uuid}/force-password-change", helpdesk)
    assert resp.status_code == 200 and resp.json["must_change_password"] is True


def test_a_password_is_kept_as_typed(client, admin, svc, people):
    spaced = "  Spaced-Out-Password-5  "
    resp = api(client, "POST", f"{BASE}/{people['bob']}/password", admin, json={"password": spaced})
    assert resp.status_code == 204
    hashed = user_row(svc, "bob").password_hash
    assert svc.password_hasher.verify(spaced, hashed)[0]
    assert not svc.password_hasher.verify(spaced.strip(), hashed)[0]


def test_reset_mfa(app, client, svc, people):
    ann_id = user_row(svc, "ann").id
    enrol_totp(svc, ann_id)
    assert mfa_counts(svc)["totp"] == 1
    helpdesk = service_token(app, roles=("Helpdesk",))
    resp = api(client, "POST", f"{BASE}/{people['ann']}/reset-mfa", helpdesk)
    assert resp.status_code == 200 and resp.json == {"removed": 1}
    assert mfa_counts(svc)["totp"] == 0
    event = last_audit(svc)
    assert event.action == "mfa.reset" and event.details["removed"] == ["totp"]
    assert any(m["To"] == "ann@example.org" for m in outbox(svc))


def test_sessions_list_and_log_out_everywhere(app, client, admin, svc, people):
    browser = app.test_client()
    assert login(browser, "ann", GOOD).status_code in (302, 303)
    listed_ = api(client, "GET", f"{BASE}/{people['ann']}/sessions", admin)
    assert listed_.status_code == 200 and len(listed_.json["items"]) == 1
    session = listed_.json["items"][0]
    assert set(session) == {
        "id",
        "created_at",
        "last_activity",
        "ip",
        "location",
        "user_agent",
        "device",
        "browser",
        "os",
        "amr",
    }
    ended = api(client, "DELETE", f"{BASE}/{people['ann']}/sessions", admin)
    assert ended.status_code == 200 and ended.json == {"ended": 1}
    assert api(client, "GET", f"{BASE}/{people['ann']}/sessions", admin).json["items"] == []
    assert browser.get("/account/").status_code in (302, 303)  # signed out


# --- roles and permissions -----------------------------------------------------------------------


def test_roles_assign_list_remove(client, admin, svc, people):
    uuid = people["bob"]
    resp = api(
        client,
        "POST",
        f"{BASE}/{uuid}/roles",
        admin,
        json={
            "role": "User Manager",
            "scope_company": "acme",
            "expires_at": "2099-01-01T00:00:00Z",
        },
    )
    assert resp.status_code == 200, resp.json
    assert resp.json["scope_company"] == "acme" and resp.json["expires_at"].startswith("2099-01-01")
    items = api(client, "GET", f"{BASE}/{uuid}/roles", admin).json["items"]
    assert [(r["role"], r["scope_company"]) for r in items] == [("User Manager", "acme")]
    perms = api(client, "GET", f"{BASE}/{uuid}/permissions", admin).json
    assert perms["permissions"] == []
    assert {
        "permission": "users:*:*",
        "scope": "company",
        "scope_id": user_row(svc, "bob").company_id,
    } in perms["scoped"]
    assert api(client, "DELETE", f"{BASE}/{uuid}/roles/User%20Manager", admin).status_code == 204
    assert api(client, "GET", f"{BASE}/{uuid}/roles", admin).json["items"] == []
    problem(api(client, "DELETE", f"{BASE}/{uuid}/roles/User%20Manager", admin), 404)
    problem(api(client, "DELETE", f"{BASE}/{uuid}/roles/Nope", admin), 404)
    for body, field, status in (
        ({"role": "Nope"}, "role", 404),
        ({"role": "Auditor", "scope_company": "nope"}, "scope_company", 404),
        (
            {"role": "Auditor", "scope_company": "acme", "scope_department": "acme/Sales"},
            "scope",
            409,
        ),
        ({"role": "Auditor", "expires_at": "2000-01-01T00:00:00Z"}, "expiry", 409),
        ({"role": "Auditor", "expires_at": "2099-01-01T00:00:00"}, "expires_at", 400),
        ({"role": "Auditor", "expires_at": "9999-12-31T23:00:00-05:00"}, "expires_at", 400),
        ({"role": "Auditor", "granted_by": 1}, "granted_by", 400),
    ):
        before = snapshot(svc)
        resp = api(client, "POST", f"{BASE}/{uuid}/roles", admin, json=body)
        assert field in problem(resp, status)["detail"]
        assert snapshot(svc) == before


def test_permissions_explain(client, admin, svc, people):
    uuid = people["ann"]
    api(client, "POST", f"{BASE}/{uuid}/roles", admin, json={"role": "Auditor"})
    got = api(
        client,
        "GET",
        f"{BASE}/{uuid}/permissions",
        admin,
        query_string={"explain": "users:accounts:read"},
    )
    assert got.status_code == 200
    assert "users:*:read" in got.json["permissions"]
    assert got.json["explain"]["granted"] is True
    assert any("Auditor" in p for p in got.json["explain"]["paths"])
    no = api(
        client,
        "GET",
        f"{BASE}/{uuid}/permissions",
        admin,
        query_string={"explain": "users:accounts:delete"},
    )
    assert no.json["explain"] == {
        "permission": "users:accounts:delete",
        "granted": False,
        "paths": [],
    }
    problem(
        api(
            client, "GET", f"{BASE}/{uuid}/permissions", admin, query_string={"explain": "users:*"}
        ),
        400,
    )
