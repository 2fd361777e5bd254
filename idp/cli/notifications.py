"""``idp notifications send``: mail the administrators' security digest when one is due (for
cron; the web process also sends it after a notifiable event). Safe beside running workers:
the digest's watermark moves with a compare-and-set, so no event is mailed twice."""

from __future__ import annotations

import click

from ..errors import IdPError
from .base import emit


@click.group()
def notifications() -> None:
    """Security notifications."""


@notifications.command("send")
@click.option(
    "--now", "force", is_flag=True, help="Send what is waiting without the batching period."
)
@click.option("--json", "as_json", is_flag=True)
def send(force: bool, as_json: bool) -> None:
    """Mail the administrators' security digest if events wait for one."""
    from ..app import create_app
    from ..storage.migrate import current_revision, head_revision
    from ..web import security_digest

    app = create_app()
    svc = app.extensions["idp"]
    svc.check_database()
    if current_revision(svc.engine) != head_revision():
        raise IdPError("the database is not initialised or not up to date: run `idp init`")
    with app.test_request_context("/"):
        result = security_digest.run(svc, force=force)
    if svc.mail_queue is not None and not svc.mail_queue.wait_idle(60):
        raise IdPError("the digest mails could not be handed over within 60 seconds")
    due = result.get("due_at")
    if result.get("busy"):
        text = "another worker is sending the digest right now"
    elif result["sent"]:
        text = f"sent a digest of {result['events']} event(s) to {result['sent']} recipient(s)"
    elif due is not None:
        text = f"events wait for the batching period; due at {due.isoformat()}"
    else:
        text = "nothing to send"
    emit(as_json, {**result, "due_at": due.isoformat() if due else None}, text)
