"""Batch actions on selected users (/admin/users/batch): a confirmation page that names the
users and changes nothing, then each user handled with the administrator's own permission over
them (a delegated admin's out-of-scope users fail one by one, unchanged), and a summary of
what was done and what failed. Also the batch bar the user list includes."""

from __future__ import annotations

import secrets

import pytest
from admin_kit import make_admin, signed_in
from flask import g, render_template_string
from login_kit import audit_actions, make_user, outbox, text_of
from sqlalchemy import func, select

from idp.manage.context import Actor
from idp.storage.directory import Directory
from idp.storage.models import AuditEvent, Group, GroupMember, User, UserRole

PATH = "/admin/users/batch"


def snapshot(svc) -> dict:
    with svc.sessions() as db:
        return {
            "users": sorted(db.execute(select(User.username, User.status)).all()),
            "members": db.scalar(select(func.count()).select_from(GroupMember)),
            "roles": db.scalar(select(func.count()).select_from(UserRole)),
            "audit": db.scalar(select(func.count()).select_from(AuditEvent)),
        }


def uuid_of(svc, username: str) -> str:
    with svc.sessions() as db:
        return db.scalar(select(User.uuid).where(User.username == username))


def status_of(svc, username: str) -> str:
    with svc.sessions() as db:
        return db.scalar(select(User.status).where(User.username == username))


def groups_of(svc, username: str) -> set[str]:
    with svc.sessions() as db:
        return set(
            db.scalars(
                select(Group.path)
                .join(GroupMember, GroupMember.group_id == Group.id)
                .join(User, User.id == GroupMember.user_id)
                .where(User.username == username)
            )
        )


@pytest.fixture
def people(app):
    svc = app.extensions["idp"]
    make_admin(svc)
    for name in ("ann", "bob", "cat"):
        make_user(svc, name)
    with svc.sessions.begin() as db:
        Directory(db).create_group("staff")
    return {n: uuid_of(svc, n) for n in ("root", "ann", "bob", "cat")}


@pytest.fixture
def root(app, people):
    return signed_in(app)


def csrf_for(client) -> str:
    """The session's CSRF token as Flask-WTF makes it (a Helpdesk has no console page with a
    form yet: the user list, which carries the batch bar, is another area's)."""
    from itsdangerous import URLSafeTimedSerializer

    with client.session_transaction() as sess:
        raw = sess.setdefault("csrf_token", secrets.token_hex(20))
    return URLSafeTimedSerializer(client.application.secret_key, salt="wtf-csrf-token").dumps(raw)


def post(client, action: str, users: list[str], confirm: bool = False, **extra):
    data = {"csrf_token": csrf_for(client), "action": action, "user": users, **extra}
    if confirm:
        data["confirm"] = "yes"
    return client.post(PATH, data=data)


def test_the_confirmation_names_the_users_and_changes_nothing(root, svc, people):
    before = snapshot(svc)
    page = post(root, "deactivate", [people["ann"], people["bob"]])
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Confirm the batch action" in html
    assert "Deactivate" in html and "2 users" in html
    assert "ann" in html and "bob" in html and "cat@example.org" not in html
    assert 'name="confirm" value="yes"' in html
    assert snapshot(svc) == before


def test_batch_password_reset_mails_every_user_a_working_link(app, root, svc, people):
    page = post(root, "password_reset", [people["ann"], people["bob"]], confirm=True)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "done for 2, failed for 0" in html
    mails = outbox(svc)
    assert sorted(m["To"] for m in mails) == ["ann@example.org", "bob@example.org"]
    link = next(
        w for w in text_of(mails[0]).split() if "/password/reset/" in w and w.startswith("http")
    )
    path = link.split("127.0.0.1:5000", 1)[-1]
    assert app.test_client().get(path).status_code == 200  # the reset page opens
    actions = audit_actions(svc)
    assert actions.count("user.password_reset_sent") == 2 and "users.batch" in actions


def test_deactivate_runs_per_user_and_reports_the_one_that_fails(root, svc, people):
    ids = [people["ann"], people["root"], "no-such-id", "nul\x00id"]
    page = post(root, "deactivate", ids, confirm=True)
    html = page.get_data(as_text=True)
    assert "done for 1, failed for 3" in html
    assert "you cannot deactivate your own account" in html
    assert "no such user" in html
    assert status_of(svc, "ann") == "inactive"
    assert status_of(svc, "root") == "active"


def test_assign_role_add_and_remove_group_and_end_sessions(root, svc, people):
    post(root, "assign_role", [people["ann"]], confirm=True, role="Auditor")
    with svc.sessions() as db:
        assert db.scalar(
            select(func.count())
            .select_from(UserRole)
            .join(User, User.id == UserRole.user_id)
            .where(User.username == "ann")
        )
    post(root, "add_to_group", [people["ann"], people["bob"]], confirm=True, group="staff")
    assert groups_of(svc, "ann") == {"staff"} == groups_of(svc, "bob")
    html = post(
        root, "remove_from_group", [people["ann"], people["cat"]], confirm=True, group="staff"
    ).get_data(as_text=True)
    assert "done for 1, failed for 1" in html and "not a direct member" in html
    assert groups_of(svc, "ann") == set() and groups_of(svc, "bob") == {"staff"}
    signed_in(root.application, "cat")  # cat has a session now
    html = post(root, "end_sessions", [people["cat"]], confirm=True).get_data(as_text=True)
    assert "done for 1, failed for 0" in html
    assert "session.revoked" in audit_actions(svc)


def test_a_delegated_admin_fails_on_users_outside_their_company(app, svc):
    make_admin(svc, "chief")
    for name in ("lead", "ann", "gus"):
        make_user(svc, name)
    with svc.sessions.begin() as db:
        d = Directory(db)
        acme, globex = d.create_company("acme", "Acme"), d.create_company("globex", "Globex")
        d.create_role("Console", ["console:admin:access"])
        for name, company in (("lead", acme), ("ann", acme), ("gus", globex)):
            d.place_user(d.user_by_username(name), company=company)
        lead = d.user_by_username("lead")
        d.assign_role(lead, d.role_by_name("User Manager"), scope_company=acme)
        d.assign_role(lead, d.role_by_name("Console"))
    client = signed_in(app, "lead")
    ann, gus = uuid_of(svc, "ann"), uuid_of(svc, "gus")
    confirm = post(client, "deactivate", [ann, gus]).get_data(as_text=True)
    assert "ann" in confirm and "gus" not in confirm  # gus is not even named
    assert "1 selected user cannot be found" in confirm
    html = post(client, "deactivate", [ann, gus], confirm=True).get_data(as_text=True)
    assert "done for 1, failed for 1" in html
    assert "gus" not in html  # no name leaks for the user out of reach
    assert status_of(svc, "ann") == "inactive"
    assert status_of(svc, "gus") == "active"


def test_a_helpdesk_may_reset_passwords_but_not_assign_roles(app, svc, people):
    make_admin(svc, "desk", role="Helpdesk")
    client = signed_in(app, "desk")
    before = snapshot(svc)
    page = post(client, "assign_role", [people["ann"]], confirm=True, role="Auditor")
    assert page.status_code == 403
    assert snapshot(svc) == before
    html = post(client, "password_reset", [people["ann"]], confirm=True).get_data(as_text=True)
    assert "done for 1, failed for 0" in html


@pytest.mark.parametrize(
    "form, status, message",
    [
        ({"action": "explode"}, 400, "action: one of"),
        ({"action": "assign_role"}, 400, "role: choose the role"),
        ({"action": "add_to_group"}, 400, "group: choose the group"),
        ({"action": "add_to_group", "group": "nowhere"}, 404, "there is no group"),
        ({"action": "assign_role", "role": "Wizard"}, 404, "there is no role"),
    ],
)
def test_a_bad_request_is_refused_as_a_whole_and_changes_nothing(
    root, svc, people, form, status, message
):
    before = snapshot(svc)
    for confirm in (False, True):
        page = post(root, users=[people["ann"]], confirm=confirm, **form)
        assert page.status_code == status
        assert message in page.get_data(as_text=True)
    assert snapshot(svc) == before


def test_no_user_selected_is_a_clear_error(root, svc):
    page = post(root, "deactivate", [])
    assert page.status_code == 400
    assert "select at least one user" in page.get_data(as_text=True)


def test_without_the_csrf_token_nothing_happens(root, svc, people):
    before = snapshot(svc)
    page = root.post(PATH, data={"action": "deactivate", "user": [people["ann"]], "confirm": "yes"})
    assert page.status_code == 400
    assert snapshot(svc) == before


def test_the_batch_bar_posts_to_the_batch_endpoint_with_the_choices(app, svc, people):
    with svc.sessions() as db:
        root_id = db.scalar(select(User.id).where(User.username == "root"))
    with app.test_request_context("/admin/"):
        g.admin_actor = Actor.user(root_id, people["root"])
        html = render_template_string(
            '{% include "admin/_batch_bar.html" %}', csrf_token=lambda: "t"
        )
    assert 'id="batch-form"' in html and 'action="/admin/users/batch"' in html
    assert 'name="csrf_token"' in html
    assert 'value="password_reset"' in html and 'value="end_sessions"' in html
    assert '<option value="Auditor">' in html and '<option value="staff">' in html
