"""The console's user screens (idp/web/admin/users.py): the list with each filter, pages in
SQL and the export; creating users with every field; the user page and each account action;
and the hostile cases (no CSRF token, bad dates, duplicates, an organisation mismatch, a
delegated administrator outside their subtree, Helpdesk deleting), each changing nothing."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import pytest
from admin_kit import console_csrf, make_admin, signed_in
from login_kit import GOOD, audit_actions, login, make_user, outbox
from sqlalchemy import func, select

from idp.storage.directory import Directory
from idp.storage.models import AuditEvent, Group, GroupMember, Role, User, UserRole

NEW_PASSWORD = "Fresh-Start-Password-77"


def counts(svc) -> tuple[int, int]:
    with svc.sessions() as db:
        return (
            int(db.scalar(select(func.count(User.id)))),
            int(db.scalar(select(func.count(AuditEvent.id)))),
        )


def row(svc, username: str) -> User | None:
    with svc.sessions() as db:
        user = db.scalar(select(User).where(User.username == username))
        if user is not None:
            db.expunge(user)
        return user


@pytest.fixture
def org(svc):
    """acme (Engineering, Sales; positions Engineer, Sales rep) and globex (Ops)."""
    with svc.sessions.begin() as db:
        d = Directory(db)
        acme = d.create_company("acme", "Acme")
        globex = d.create_company("globex", "Globex")
        d.create_department(acme, "Engineering")
        d.create_department(acme, "Sales")
        d.create_department(globex, "Ops")
        d.create_position(acme, "Engineer")
        d.create_position(acme, "Sales rep")
        d.create_group("staff")
        d.create_group("it", "staff")
        return {
            "acme": acme.id,
            "globex": globex.id,
            "eng": d.department("acme/Engineering").id,
            "ops": d.department("globex/Ops").id,
        }


@pytest.fixture
def admin(app, svc):
    make_admin(svc)
    return signed_in(app)


def names(html: str) -> list[str]:
    return re.findall(r'<a href="/admin/users/[0-9a-f-]{36}">([^<]+)</a>', html)


@pytest.fixture
def people(svc, org):
    make_user(
        svc,
        "ann",
        given_name="Ann",
        family_name="Archer",
        start_date=date(2020, 1, 1),
        color="#d94f00",
        phone="+49 30 1234",
    )
    make_user(svc, "bob", given_name="Bob", family_name="Baker", end_date=date(2021, 1, 1))
    make_user(svc, "cid", given_name="Cid", family_name="Cole", start_date=date(2099, 1, 1))
    make_user(svc, "dan", given_name="Dan", family_name="Drake", status="locked")
    with svc.sessions.begin() as db:
        d = Directory(db)
        acme, globex = d.company("acme"), d.company("globex")
        ann, bob, cid = (d.user_by_username(n) for n in ("ann", "bob", "cid"))
        d.place_user(
            ann,
            company=acme,
            department=d.department("acme/Engineering"),
            position=d.position(acme, "Engineer"),
        )
        d.place_user(
            bob,
            company=acme,
            department=d.department("acme/Sales"),
            position=d.position(acme, "Sales rep"),
        )
        d.place_user(cid, company=globex, department=d.department("globex/Ops"))
        d.add_member(d.group_by_path("staff/it"), ann)


# --- the list --------------------------------------------------------------------------------


def listed(client, **query) -> list[str]:
    resp = client.get("/admin/users", query_string=query)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:2000]
    return names(resp.get_data(as_text=True))


def test_list_shows_every_user_with_status_badges_and_colour(admin, people):
    html = admin.get("/admin/users").get_data(as_text=True)
    assert names(html) == ["Ann Archer", "Bob Baker", "Cid Cole", "Dan Drake", "root"]
    assert '<span class="badge bad">Locked</span>' in html
    assert "border-left: .35rem solid #d94f00" in html and 'class="swatch"' in html
    assert 'name="user" value="' in html and 'form="batch-form"' in html
    assert 'aria-label="Select Ann Archer"' in html
    assert 'data-select-all="user"' in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "ARCH"}, ["Ann Archer"]),
        ({"q": "+49 30"}, ["Ann Archer"]),
        ({"q": "bob@example"}, ["Bob Baker"]),
        ({"company": "acme"}, ["Ann Archer", "Bob Baker"]),
        ({"company": "acme", "department": "DEPT:eng"}, ["Ann Archer"]),
        ({"position": "Sales rep"}, ["Bob Baker"]),
        ({"group": "staff"}, ["Ann Archer"]),
        ({"status": "locked"}, ["Dan Drake"]),
        ({"employment": "past"}, ["Bob Baker"]),
        ({"employment": "future"}, ["Cid Cole"]),
        ({"start_from": "2019-12-31", "start_to": "2020-01-01"}, ["Ann Archer"]),
        ({"end_to": "2021-01-01"}, ["Bob Baker"]),
        # Descending, users without a family name still last.
        ({"sort": "-family_name"}, ["Dan Drake", "Cid Cole", "Bob Baker", "Ann Archer", "root"]),
    ],
)
def test_each_filter(admin, people, org, query, expected):
    query = {k: (str(org["eng"]) if v == "DEPT:eng" else v) for k, v in query.items()}
    assert listed(admin, **query) == expected


def test_the_company_filter_offers_that_companys_departments_only(admin, people):
    html = admin.get("/admin/users?company=acme").get_data(as_text=True)
    assert ">Engineering</option>" in html and ">Sales</option>" in html
    assert ">Ops</option>" not in html


def test_bad_dates_are_an_error_beside_the_field_and_list_nothing(admin, people):
    resp = admin.get("/admin/users?start_from=2020-13-45")
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert 'id="f-start_from-error"' in html and "YYYY-MM-DD" in html
    assert names(html) == []
    resp = admin.get("/admin/users?end_from=2022-01-01&end_to=2021-01-01")
    assert resp.status_code == 400
    assert "The range ends before it starts." in resp.get_data(as_text=True)


def test_pages_are_cut_in_sql(app, admin, svc, people):
    for i in range(12):
        make_user(svc, f"zz{i:02d}", family_name=f"Zz{i:02d}")
    statements: list[str] = []
    from sqlalchemy import event

    engine = svc.engine

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        html = admin.get("/admin/users?per_page=10&page=2").get_data(as_text=True)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(names(html)) == 7  # 17 users: 10 on page 1, 7 on page 2
    assert "17 results · page 2 of 2" in html
    listing = [s for s in statements if "FROM users" in s and "LIMIT" in s.upper()]
    assert listing, statements
    assert listed(admin, per_page="7") == listed(admin, per_page="25")  # unknown size: 25


def test_export_honours_the_filters(admin, svc, people):
    resp = admin.get("/admin/users/export?format=csv&company=acme&sort=username")
    assert resp.status_code == 200
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="users-')
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True).lstrip("\ufeff"))))
    assert [r["username"] for r in rows] == ["ann", "bob"]
    xlsx = admin.get("/admin/users/export?format=xlsx&status=locked")
    assert xlsx.status_code == 200 and xlsx.data[:2] == b"PK"
    assert "users.exported" in audit_actions(svc)
    assert admin.get("/admin/users/export?format=pdf").status_code == 400


# --- create ----------------------------------------------------------------------------------


def png(width: int = 300, height: int = 300) -> io.BytesIO:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 20)).save(out, format="PNG")
    out.seek(0)
    return out


def create(client, **fields):
    data = {
        "csrf_token": console_csrf(client, "/admin/users/new"),
        "source": "local",
        "first_access": "none",
        **fields,
    }
    return client.post("/admin/users/new", data=data, content_type="multipart/form-data")


def test_create_with_every_field_and_the_first_access_mail(admin, svc, org):
    resp = create(
        admin,
        username="dora",
        email="Dora@Example.org",
        given_name="Dora",
        family_name="Diaz",
        display_name="Dora D.",
        phone="+49 30 555",
        company="acme",
        department=str(org["eng"]),
        position="Engineer",
        roles=["Read-only"],
        groups=["staff/it"],
        start_date="2026-01-01",
        end_date="2027-12-31",
        color="#336699",
        require_mfa="on",
        first_access="reset",
        photo=(png(), "me.png"),
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[:3000]
    dora = row(svc, "dora")
    assert resp.headers["Location"] == f"/admin/users/{dora.uuid}"
    assert (dora.email, dora.given_name, dora.family_name, dora.display_name) == (
        "dora@example.org",
        "Dora",
        "Diaz",
        "Dora D.",
    )
    assert (dora.phone, dora.color, dora.require_mfa) == ("+49 30 555", "#336699", True)
    assert (dora.start_date, dora.end_date) == (date(2026, 1, 1), date(2027, 12, 31))
    assert dora.company_id == org["acme"] and dora.department_id == org["eng"]
    assert dora.position_id is not None and dora.avatar and dora.avatar.endswith(".png")
    with svc.sessions() as db:
        groups = db.scalars(
            select(Group.path).join(GroupMember).where(GroupMember.user_id == dora.id)
        ).all()
        roles = db.scalars(
            select(Role.name).join(UserRole).where(UserRole.user_id == dora.id)
        ).all()
    assert groups == ["staff/it"] and roles == ["Read-only"]
    page = admin.get(resp.headers["Location"]).get_data(as_text=True)
    assert "staff/it" in page and "Read-only" in page
    mails = outbox(svc)
    assert mails and mails[-1]["To"] == "dora@example.org"
    assert "/password/reset/" in mails[-1].get_body(("plain",)).get_content()
    assert "user.created" in audit_actions(svc) and "user.placed" in audit_actions(svc)


@pytest.mark.parametrize(
    ("fields", "status", "field", "message"),
    [
        ({"username": "ann"}, 409, "username", "This username is already taken."),
        ({"username": "x1", "email": "ann@example.org"}, 409, "email", "already has this e-mail"),
        ({"username": "x2", "start_date": "2026-02-30"}, 400, "start_date", "YYYY-MM-DD"),
        (
            {"username": "x3", "start_date": "2026-05-01", "end_date": "2026-04-01"},
            400,
            "end_date",
            "The end date is before the start date.",
        ),
        ({"username": "x4", "company": "globex", "department": "DEPT:eng"}, 409, "department", ""),
        ({"username": "x5", "company": "nope"}, 400, "company", ""),
        ({"username": "x6", "password": "short"}, 400, "password", ""),
        ({"username": "x7", "color": "red"}, 400, "color", "#rrggbb"),
        ({"username": "bad name!"}, 400, "username", "letters, digits"),
        ({"username": "x8", "first_access": "reset"}, 400, "email", "needs an e-mail"),
    ],
)
def test_create_refuses_bad_input_beside_the_field_and_creates_nothing(
    admin, svc, people, org, fields, status, field, message
):
    fields = {k: (str(org["eng"]) if v == "DEPT:eng" else v) for k, v in fields.items()}
    before = counts(svc)
    resp = create(admin, **fields)
    html = resp.get_data(as_text=True)
    assert resp.status_code == status, html[:3000]
    assert f'id="u-{field}-error"' in html
    assert message in html
    assert counts(svc) == before


def test_a_photo_too_small_is_refused_and_nothing_is_created(admin, svc, org):
    before = counts(svc)
    resp = create(admin, username="tiny", photo=(png(100, 100), "tiny.png"))
    assert resp.status_code == 400
    assert "at least 200×200 pixels" in resp.get_data(as_text=True)
    resp = create(admin, username="tiny", photo=(io.BytesIO(b"GIF89a not really"), "x.gif"))
    assert resp.status_code == 400
    assert counts(svc) == before and row(svc, "tiny") is None


def test_update_choices_lists_the_chosen_companys_departments(admin, org):
    resp = admin.post(
        "/admin/users/new",
        data={
            "csrf_token": console_csrf(admin, "/admin/users/new"),
            "company": "globex",
            "refresh": "1",
        },
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert ">Ops</option>" in html and ">Engineering</option>" not in html


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(admin, svc, people):
    before = counts(svc)
    resp = admin.post("/admin/users/new", data={"source": "local", "username": "eve"})
    assert resp.status_code == 400
    ann = row(svc, "ann")
    assert admin.post(f"/admin/users/{ann.uuid}/lock").status_code == 400
    assert counts(svc) == before and row(svc, "ann").status == "active"


def test_directory_accounts_need_a_configured_directory(admin, svc):
    before = counts(svc)
    resp = create(admin, source="ldap", username="carol")
    assert resp.status_code == 400
    assert "No directory (LDAP) is configured." in resp.get_data(as_text=True)
    assert counts(svc) == before


# --- the user page and its actions ---------------------------------------------------------


def test_user_page_shows_profile_access_and_explained_permissions(app, admin, svc, people):
    make_admin(svc, "helper", role="Helpdesk")
    helper = row(svc, "helper")
    html = admin.get(f"/admin/users/{helper.uuid}").get_data(as_text=True)
    assert "Helpdesk" in html and "Effective permissions" in html
    assert "role Helpdesk" in html or "Helpdesk" in html.split("Granted through")[1]
    ann = row(svc, "ann")
    html = admin.get(f"/admin/users/{ann.uuid}").get_data(as_text=True)
    assert "staff/it" in html and "Engineering" in html and "#d94f00" in html


def test_profile_edit_changes_only_the_fields_and_refuses_duplicates(admin, svc, people):
    ann = row(svc, "ann")
    url = f"/admin/users/{ann.uuid}/profile"
    form = {
        "csrf_token": console_csrf(admin, f"/admin/users/{ann.uuid}"),
        "username": "ann",
        "email": "ann@example.org",
        "given_name": "Annie",
        "family_name": "Archer",
        "phone": "+49 30 1234",
        "color": "#d94f00",
        "start_date": "2020-01-01",
        "end_date": "",
        "require_mfa": "on",
    }
    resp = admin.post(url, data=form)
    assert resp.status_code == 302
    ann2 = row(svc, "ann")
    assert ann2.given_name == "Annie" and ann2.require_mfa is True
    before = counts(svc)
    resp = admin.post(url, data=dict(form, email="bob@example.org"))
    assert resp.status_code == 409
    assert 'id="u-email-error"' in resp.get_data(as_text=True)
    resp = admin.post(url, data=dict(form, end_date="2019-01-01"))
    assert resp.status_code == 400
    assert "The end date is before the start date." in resp.get_data(as_text=True)
    assert counts(svc) == before and row(svc, "ann").email == "ann@example.org"


def post_action(client, uuid: str, path: str, **data):
    data["csrf_token"] = console_csrf(client, f"/admin/users/{uuid}")
    return client.post(f"/admin/users/{uuid}/{path}", data=data)


def test_lock_unlock_force_change_and_set_password(app, admin, svc, people):
    ann = row(svc, "ann")
    assert post_action(admin, ann.uuid, "lock").status_code == 302
    assert row(svc, "ann").status == "locked"
    assert post_action(admin, ann.uuid, "unlock").status_code == 302
    assert row(svc, "ann").status == "active"
    assert post_action(admin, ann.uuid, "force-password-change").status_code == 302
    assert row(svc, "ann").must_change_password is True
    before = counts(svc)
    resp = post_action(admin, ann.uuid, "password", password="abc")
    assert resp.status_code == 400
    assert 'id="u-new-password-error"' in resp.get_data(as_text=True)
    assert counts(svc) == before
    assert post_action(admin, ann.uuid, "password", password=NEW_PASSWORD).status_code == 302
    assert login(app.test_client(), "ann", NEW_PASSWORD).status_code in (302, 303)
    actions = audit_actions(svc)
    for action in (
        "user.locked",
        "user.unlocked",
        "user.password_change_forced",
        "user.password_set",
    ):
        assert action in actions


def test_nobody_locks_themselves(admin, svc):
    root = row(svc, "root")
    resp = post_action(admin, root.uuid, "lock")
    assert resp.status_code == 302
    assert row(svc, "root").status == "active"


def test_sessions_with_device_names_end_one_and_all(app, admin, svc, people):
    ua = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36"
    )
    for _ in range(2):
        client = app.test_client()
        client.environ_base["HTTP_USER_AGENT"] = ua
        login(client, "ann", GOOD)
    ann = row(svc, "ann")
    html = admin.get(f"/admin/users/{ann.uuid}").get_data(as_text=True)
    assert "Chrome 120 on Linux" in html
    sids = re.findall(r'name="session" value="([^"]+)"', html)
    sids = [s for s in sids if s != "all"]
    assert len(sids) == 2
    assert post_action(admin, ann.uuid, "sessions/end", session=sids[0]).status_code == 302
    html = admin.get(f"/admin/users/{ann.uuid}").get_data(as_text=True)
    assert sids[0] not in html and sids[1] in html
    assert post_action(admin, ann.uuid, "sessions/end", session="all").status_code == 302
    assert "not signed in anywhere" in admin.get(f"/admin/users/{ann.uuid}").get_data(as_text=True)


def test_reset_mfa_removes_the_factors(admin, svc, people):
    from mfa_kit import enrol_totp, mfa_counts

    ann = row(svc, "ann")
    enrol_totp(svc, ann.id)
    assert "Reset second factors" in admin.get(f"/admin/users/{ann.uuid}").get_data(as_text=True)
    assert post_action(admin, ann.uuid, "reset-mfa").status_code == 302
    assert "mfa.reset" in audit_actions(svc)
    assert "No second factor set up." in admin.get(f"/admin/users/{ann.uuid}").get_data(
        as_text=True
    )
    assert mfa_counts(svc)


def test_delete_needs_the_typed_username(admin, svc, people):
    ann = row(svc, "ann")
    assert "Type the username ann" in admin.get(f"/admin/users/{ann.uuid}/delete").get_data(
        as_text=True
    )
    before = counts(svc)
    resp = post_action(admin, ann.uuid, "delete", confirm_username="bob")
    assert resp.status_code == 400 and counts(svc) == before
    resp = post_action(admin, ann.uuid, "delete", confirm_username="ann")
    assert resp.status_code == 302 and resp.headers["Location"] == "/admin/users"
    assert row(svc, "ann") is None and "user.deleted" in audit_actions(svc)


def test_recent_activity_has_human_event_names(admin, svc, people):
    ann = row(svc, "ann")
    post_action(admin, ann.uuid, "lock")
    html = admin.get(f"/admin/users/{ann.uuid}").get_data(as_text=True)
    assert "Account locked" in html.split("Recent activity")[1]


# --- who may do what ---------------------------------------------------------------------------


def test_helpdesk_cannot_delete(app, svc, people):
    make_admin(svc, "desk", role="Helpdesk")
    desk = signed_in(app, "desk")
    ann = row(svc, "ann")
    html = desk.get(f"/admin/users/{ann.uuid}").get_data(as_text=True)
    assert "Delete user" not in html
    assert desk.get(f"/admin/users/{ann.uuid}/delete").status_code == 403
    before = counts(svc)
    resp = desk.post(
        f"/admin/users/{ann.uuid}/delete",
        data={
            "csrf_token": console_csrf(desk, f"/admin/users/{ann.uuid}"),
            "confirm_username": "ann",
        },
    )
    assert resp.status_code == 403
    assert counts(svc) == before and row(svc, "ann") is not None


def test_delegated_admin_sees_only_their_company(app, svc, people):
    make_user(svc, "acmeadmin")
    with svc.sessions.begin() as db:
        d = Directory(db)
        user = d.user_by_username("acmeadmin")
        role = db.scalar(select(Role).where(Role.name == "Administrator"))
        d.assign_role(user, role, scope_company=d.company("acme"))
        # The console itself is opened with a global grant (guard.py); the rest is scoped.
        d.assign_role(user, d.create_role("Console", ["console:admin:access"]))
        d.place_user(user, company=d.company("acme"))
    client = signed_in(app, "acmeadmin")
    assert listed(client) == ["Ann Archer", "Bob Baker", "acmeadmin"]
    cid = row(svc, "cid")
    assert client.get(f"/admin/users/{cid.uuid}").status_code == 404
    before = counts(svc)
    csrf = console_csrf(client, f"/admin/users/{row(svc, 'ann').uuid}")
    resp = client.post(f"/admin/users/{cid.uuid}/lock", data={"csrf_token": csrf})
    assert resp.status_code == 404
    assert counts(svc) == before and row(svc, "cid").status == "active"


def test_an_unknown_user_is_404(admin):
    assert admin.get("/admin/users/00000000-0000-0000-0000-000000000000").status_code == 404
