"""Helpers for the MFA tests: sign in through /login and the MFA step, read codes from the
outbox, enrol factors directly (for tests about something else)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyotp
import secret_watch
from login_kit import GOOD, csrf, login, outbox, text_of
from sqlalchemy import func, select
from support import store_keys

from idp.storage.models import AuditEvent
from idp.storage.models_auth import SsoSessionIndex
from idp.storage.models_mfa import MfaBackupCode, MfaOtpChannel, MfaRememberedDevice, MfaTotp


def enrol_totp(svc, user_id: int) -> pyotp.TOTP:
    from idp.backends import totp

    secret = totp.new_secret()
    secret_watch.register(secret)
    with svc.sessions.begin() as db:
        totp.save(svc, db, user_id, secret)
    p = totp.params(svc)
    return pyotp.TOTP(secret, digits=p.digits, interval=p.period)


def code_at(t: pyotp.TOTP, clock, offset_steps: int = 0) -> str:
    return t.at(clock.now() + offset_steps * t.interval)


def add_channel(svc, user_id: int, kind: str, destination: str) -> None:
    with svc.sessions.begin() as db:
        db.add(
            MfaOtpChannel(
                user_id=user_id, kind=kind, destination=destination, created_at=svc.clock.utcnow()
            )
        )


def step_page(client, **query) -> str:
    resp = client.get("/login/step", query_string=query)
    assert resp.status_code == 200, resp.status_code
    return resp.get_data(as_text=True)


def submit_code(
    client, code: str, factor: str | None = None, remember: bool = False, page: str | None = None
):
    html = page or step_page(client)
    data = {"csrf_token": csrf(html), "code": code}
    m = re.search(r'name="factor" value="([^"]+)"', html)
    if factor or m:
        data["factor"] = factor or m.group(1)
    if remember:
        data["remember"] = "1"
    return client.post("/login/step", data=data)


def signed_in(client) -> bool:
    return client.get("/account/").status_code == 200


def password_then_step(client, username: str, r: str | None = None):
    resp = login(client, username, GOOD, r=r)
    assert resp.status_code == 302, resp.status_code
    return resp


def last_mail_code(svc) -> str:
    msg = outbox(svc)[-1]
    return re.search(r"\b(\d{6})\b", text_of(msg)).group(1)


def sms_files(svc) -> list[dict]:
    box = Path(svc.settings.instance_dir) / "outbox"
    return [json.loads(f.read_text()) for f in sorted(box.glob("*.sms.json"))]


def mfa_counts(svc) -> dict[str, int]:
    with svc.sessions() as db:

        def n(model, *where):
            return db.scalar(select(func.count()).select_from(model).where(*where))

        return {
            "sessions": n(SsoSessionIndex),
            "totp": n(MfaTotp),
            "backup_unused": n(MfaBackupCode, MfaBackupCode.used_at.is_(None)),
            "channels": n(MfaOtpChannel),
            "devices": n(MfaRememberedDevice),
        }


def kv_keys(svc, prefix: str) -> list[str]:
    return store_keys(svc, prefix)


def audits(svc, action: str) -> list[AuditEvent]:
    with svc.sessions() as db:
        rows = list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)))
        for r in rows:
            db.expunge(r)
        return rows
