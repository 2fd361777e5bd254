"""Uploaded import files kept between the console's dry run and the import, and the background
runs over them.

A job is a directory ``{instance_dir}/uploads/import/<id>/`` (a random id): the file as
uploaded (``data``), ``meta.json`` (who uploaded it, the options, the state), ``progress.json``
(rows done / rows in the file, rewritten while a run goes) and ``result.json`` (the rows' report
of the last run). Files, not the short-lived store: several workers serve the progress page,
and on SQLite a running import holds the database's write lock, which a store write (a table
of that database) would wait on.

A job belongs to the administrator who uploaded it and to their browser session (the id is
also kept in the signed session cookie): anyone else's request for it is "not found". It
expires :data:`TTL` after the upload and is deleted then (any access, or the next upload,
sweeps expired jobs) and after the import has run."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app, session

from ...manage.context import Actor, transaction
from ...manage.user_import import ImportOptions, import_users
from ...manage.user_sheet import FileRefused
from ..current import svc

TTL = 20 * 60  # seconds from the upload (shorter than a console session idles out)
SESSION_KEY = "admin_imports"
MAX_PER_SESSION = 5
_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")

# States: previewing -> preview -> importing -> done; refused / error end a run early.
RUNNING = ("previewing", "importing")


@dataclass
class Job:
    id: str
    path: Path
    meta: dict[str, Any]

    @property
    def state(self) -> str:
        return self.meta["state"]

    def progress(self) -> tuple[int, int]:
        data = _read_json(self.path / "progress.json") or {}
        return int(data.get("done", 0)), int(data.get("total", 0))

    def result(self) -> dict[str, Any] | None:
        return _read_json(self.path / "result.json")

    def save(self) -> None:
        _write_json(self.path / "meta.json", self.meta)


def _root() -> Path:
    return Path(svc().settings.instance_dir) / "uploads" / "import"


def _now() -> float:
    return svc().clock.now()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    os.replace(tmp, path)  # readers never see half a file


def sweep() -> None:
    """Delete every expired job (of anyone)."""
    root = _root()
    if not root.is_dir():
        return
    now = _now()
    for path in root.iterdir():
        meta = _read_json(path / "meta.json")
        if meta is None or now - float(meta.get("created", 0)) > TTL:
            shutil.rmtree(path, ignore_errors=True)


def create(owner: int, data: bytes, filename: str | None, match: str, atomic: bool) -> Job:
    sweep()
    job_id = secrets.token_urlsafe(16)
    path = _root() / job_id
    path.mkdir(parents=True, mode=0o700)
    (path / "data").write_bytes(data)
    job = Job(
        job_id,
        path,
        {
            "owner": owner,
            "filename": (filename or "")[-200:],
            "match": match,
            "atomic": atomic,
            "created": _now(),
            "state": "previewing",
            "error": None,
        },
    )
    job.save()
    mine = [j for j in session.get(SESSION_KEY, []) if (_root() / j).is_dir()]
    session[SESSION_KEY] = [*mine[-(MAX_PER_SESSION - 1) :], job_id]
    return job


def find(job_id: str, owner: int) -> Job | None:
    """The job, if it exists, is not expired, and is this administrator's in this session."""
    if not _ID.match(job_id) or job_id not in session.get(SESSION_KEY, []):
        return None
    path = _root() / job_id
    meta = _read_json(path / "meta.json")
    if meta is None or meta.get("owner") != owner:
        return None
    if _now() - float(meta.get("created", 0)) > TTL:
        shutil.rmtree(path, ignore_errors=True)
        return None
    return Job(job_id, path, meta)


def discard(job: Job) -> None:
    shutil.rmtree(job.path, ignore_errors=True)
    session[SESSION_KEY] = [j for j in session.get(SESSION_KEY, []) if j != job.id]


def start(job: Job, actor: Actor, *, dry_run: bool) -> threading.Thread:
    """Run the dry run (or the import) of the job's file in a thread of this process."""
    job.meta["state"] = "previewing" if dry_run else "importing"
    job.meta["error"] = None
    job.save()
    _write_json(job.path / "progress.json", {"done": 0, "total": 0})
    app = current_app._get_current_object()
    thread = threading.Thread(
        target=_run, args=(app, job, actor, dry_run), name=f"import-{job.id}", daemon=True
    )
    thread.start()
    return thread


def _run(app: Any, job: Job, actor: Actor, dry_run: bool) -> None:
    with app.app_context():
        services = app.extensions["idp"]
        limits = services.settings.api

        def progress(done: int, total: int) -> None:
            _write_json(job.path / "progress.json", {"done": done, "total": total})

        try:
            data = (job.path / "data").read_bytes()
            with transaction(services, actor) as ctx:
                result = import_users(
                    ctx,
                    data,
                    filename=job.meta["filename"] or None,
                    options=ImportOptions(
                        dry_run=dry_run, match=job.meta["match"], atomic=job.meta["atomic"]
                    ),
                    max_bytes=limits.import_max_bytes,
                    max_rows=limits.import_max_rows,
                    progress=progress,
                )
            report = result.as_dict()
            report["names"] = _names(data, job.meta["filename"], limits)
            _write_json(job.path / "result.json", report)
            job.meta["state"] = "preview" if dry_run else "done"
        except FileRefused as exc:
            job.meta.update(state="refused", error=str(exc))
        except Exception as exc:  # a run that broke: reported on the page, logged with a stack
            app.logger.exception("console import %s failed", job.id)
            job.meta.update(state="error", error=type(exc).__name__)
        job.save()
        if not dry_run and job.meta["state"] == "done":
            (job.path / "data").unlink(missing_ok=True)  # applied: the upload is not kept


def _names(data: bytes, filename: str, limits: Any) -> dict[str, list[str | None]]:
    """Row number -> [username, email] as the file says, for the report's table."""
    from ...manage.user_sheet import cell_text, read_table

    table = read_table(
        data,
        filename=filename or None,
        max_bytes=limits.import_max_bytes,
        max_rows=limits.import_max_rows,
    )
    return {
        str(r.number): [cell_text(r.values.get("username")), cell_text(r.values.get("email"))]
        for r in table.rows
    }
