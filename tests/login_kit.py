"""Helpers for the hosted-login tests: users, CSRF tokens, the mail outbox."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from typing import Any

import secret_watch
from sqlalchemy import func, select
from support import store_keys

from idp.backends.chain import password_hasher
from idp.storage.directory import Directory, NewUser
from idp.storage.models import AuditEvent, Company, User

GOOD = "Tr0ub4dor-Horse-Battery"


def make_user(svc, username: str, password: str | None = GOOD, **fields: Any) -> int:
    secret_watch.register(password)
    with svc.sessions.begin() as db:
        user = Directory(db).create_user(
            NewUser(
                username=username,
                email=fields.pop("email", f"{username}@example.org"),
                password_hash=password_hasher(svc).hash(password) if password else None,
            )
        )
        user.password_changed_at = fields.pop("password_changed_at", svc.clock.utcnow())
        for key, value in fields.items():
            setattr(user, key, value)
        return user.id


def company_with_control_word(app, word: str = "Blue Harbour") -> int:
    """A company "acme" whose people may ask for a first-login link with ``word``; its id."""
    from idp.web.password import set_control_word

    svc = app.extensions["idp"]
    with app.app_context(), svc.sessions.begin() as db:
        company = Company(slug="acme", name="Acme", names={})
        db.add(company)
        db.flush()
        set_control_word(db, company, word)
        return company.id


def user_row(svc, username: str) -> User:
    with svc.sessions() as db:
        user = db.scalar(select(User).where(User.username == username))
        db.expunge(user)
        return user


def csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def post_form(client, url: str, data: dict[str, Any], page: str | None = None, **kw):
    """GET ``page`` (default: ``url``) for its CSRF token, then POST."""
    html = client.get(page or url).get_data(as_text=True)
    return client.post(url, data={"csrf_token": csrf(html), **data}, **kw)


def login(client, username: str, password: str, r: str | None = None, next: str | None = None):
    page = "/login" + (f"?r={r}" if r else "") + (f"?next={next}" if next else "")
    data = {"username": username, "password": password}
    if r:
        data["r"] = r
    if next:
        data["next"] = next
    return post_form(client, "/login", data, page=page)


def outbox(svc) -> list[email.message.EmailMessage]:
    """The mails sent so far, once the background mail queue has nothing left to do."""
    queue = svc.mail_queue
    assert queue is None or queue.wait_idle(15), "mail still queued after 15 s"
    box = Path(svc.settings.instance_dir) / "outbox"
    files = sorted(box.glob("*.eml")) if box.is_dir() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def text_of(msg) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


def link_in(msg, path: str) -> str:
    m = re.search(r"https?://[^\s\"<>]+" + re.escape(path) + r"[^\s\"<>]*", text_of(msg))
    assert m, f"no {path} link in mail"
    return m.group(0)


def counts(svc) -> dict[str, int]:
    """Rows that a refused request must not have changed."""
    from idp.storage.models_auth import PasswordHistory, SsoSessionIndex

    with svc.sessions() as db:
        return {
            "users": db.scalar(select(func.count()).select_from(User)),
            "sessions": db.scalar(select(func.count()).select_from(SsoSessionIndex)),
            "history": db.scalar(select(func.count()).select_from(PasswordHistory)),
            "kv": len(store_keys(svc)),
        }


def audit_actions(svc) -> list[str]:
    with svc.sessions() as db:
        return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
