"""The console's user import (/admin/users/import): an upload kept server-side, a dry-run
preview that writes nothing, "Import" that applies the same file, atomic and non-atomic
imports, refusals (size, type, CSRF) that change nothing, and an upload id that is another
administrator's, or expired, answering "not found" with nothing written."""

from __future__ import annotations

import csv
import io
import re
import threading

import openpyxl
import pytest
from admin_kit import console_csrf, make_admin, signed_in
from sqlalchemy import func, select

from idp.storage.models import AuditEvent, User
from idp.web.admin import import_jobs, users_bulk

PATH = "/admin/users/import"


def csv_file(rows: list[list]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()


def xlsx_file(rows: list[list]) -> bytes:
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


GOOD_AND_BAD = [
    ["username", "email", "given_name"],
    ["amy", "amy@example.org", "Amy"],
    ["bob", "not-an-address", "Bob"],
    ["cat", "cat@example.org", "Cat"],
]


def state(svc) -> tuple[int, int]:
    with svc.sessions() as db:
        return (
            db.scalar(select(func.count()).select_from(User)),
            db.scalar(select(func.count()).select_from(AuditEvent)),
        )


def usernames(svc) -> set[str]:
    with svc.sessions() as db:
        return set(db.scalars(select(User.username)))


@pytest.fixture
def root(app):
    make_admin(app.extensions["idp"])
    return signed_in(app)


def upload(client, data: bytes, filename: str = "users.csv", **form):
    fields = {"csrf_token": console_csrf(client, PATH), "match": "email", **form}
    fields["file"] = (io.BytesIO(data), filename)
    return client.post(PATH, data=fields, content_type="multipart/form-data")


def job_id_of(response) -> str:
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    found = re.search(r"/admin/users/import/([A-Za-z0-9_-]{22})$", response.headers["Location"])
    assert found, response.headers["Location"]
    return found.group(1)


def apply(client, job_id: str):
    token = console_csrf(client, PATH)
    return client.post(f"{PATH}/{job_id}/apply", data={"csrf_token": token})


def test_the_form_offers_the_options_and_a_template(root):
    html = root.get(PATH).get_data(as_text=True)
    assert 'type="file"' in html and 'name="match"' in html and 'name="atomic"' in html
    template = root.get(f"{PATH}/template.csv")
    assert template.status_code == 200
    assert template.get_data(as_text=True).splitlines()[0].startswith("username,email")


def test_preview_shows_every_row_and_writes_nothing_then_import_applies_it(root, svc):
    before = state(svc)
    job = job_id_of(upload(root, csv_file(GOOD_AND_BAD)))
    page = root.get(f"{PATH}/{job}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Nothing has changed yet" in html
    assert "amy@example.org" in html and "cat" in html
    assert "not-an-address" in html and "is not an e-mail address" in html  # the bad row's error
    assert state(svc) == before  # a dry run: no user, no audit row
    assert list((import_jobs_root(svc) / job).glob("data"))  # the file is kept server-side

    report = apply(root, job)
    assert report.status_code == 303
    html = root.get(f"{PATH}/{job}").get_data(as_text=True)
    assert "Imported: 2 created, 0 updated, 0 unchanged, 1 failed." in html
    assert {"amy", "cat"} <= usernames(svc) and "bob" not in usernames(svc)
    assert not (import_jobs_root(svc) / job / "data").exists()  # applied: the upload is gone
    # applying twice is refused: the job is no longer waiting
    again = apply(root, job)
    assert again.status_code == 303
    assert len(usernames(svc)) == before[0] + 2


def test_atomic_import_with_a_bad_row_offers_no_import_and_writes_nothing(root, svc):
    before = state(svc)
    job = job_id_of(upload(root, csv_file(GOOD_AND_BAD), atomic="on"))
    html = root.get(f"{PATH}/{job}").get_data(as_text=True)
    assert "All or nothing is on" in html
    assert f"{PATH}/{job}/apply" not in html
    # forcing it anyway: the import runs atomically and writes nothing
    apply(root, job)
    html = root.get(f"{PATH}/{job}").get_data(as_text=True)
    assert "Nothing was imported" in html
    assert state(svc) == before


def test_an_xlsx_file_is_previewed_and_imported(root, svc):
    data = xlsx_file([["username", "email"], ["dan", "dan@example.org"]])
    job = job_id_of(upload(root, data, filename="people.xlsx", match="username"))
    assert "dan@example.org" in root.get(f"{PATH}/{job}").get_data(as_text=True)
    apply(root, job)
    assert "dan" in usernames(svc)


def test_a_file_over_the_limit_is_refused_and_nothing_kept(make_app, clock):
    app = make_app(clock=clock, api={"import_max_bytes": 1000})
    svc = app.extensions["idp"]
    make_admin(svc)
    client = signed_in(app)
    before = state(svc)
    response = upload(client, b"username,email\n" + b"x" * 2000)
    assert response.status_code == 413
    assert "larger than the limit" in response.get_data(as_text=True)
    assert state(svc) == before
    kept = import_jobs_root(svc)
    assert not kept.exists() or not any(kept.iterdir())


def test_a_file_that_is_not_csv_or_xlsx_is_refused_with_the_reason(root, svc):
    before = state(svc)
    response = upload(root, b"%PDF-1.7 not a sheet", filename="users.pdf")
    assert response.status_code == 400
    assert "The file was refused" in response.get_data(as_text=True)
    assert state(svc) == before


def test_a_workbook_of_a_million_shared_strings_is_refused_at_once(root, svc):
    import time

    from xlsx_kit import shared_strings_workbook

    before = state(svc)
    started = time.monotonic()
    response = upload(root, shared_strings_workbook(1_000_000), filename="users.xlsx")
    assert time.monotonic() - started < 5
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "The file was refused" in page and "shared strings" in page
    assert state(svc) == before
    kept = import_jobs_root(svc)
    assert not kept.exists() or not any(kept.iterdir())


def test_an_unknown_column_is_refused_naming_it(root, svc):
    response = upload(root, csv_file([["username", "email", "shoe_size"], ["x", "x@e.org", 9]]))
    assert response.status_code == 400
    assert "shoe_size" in response.get_data(as_text=True)


def test_no_file_is_a_clear_error(root):
    fields = {"csrf_token": console_csrf(root, PATH), "match": "email"}
    response = root.post(PATH, data=fields, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Choose a CSV or XLSX file" in response.get_data(as_text=True)


def test_upload_and_apply_without_the_csrf_token_are_refused(root, svc):
    before = state(svc)
    response = root.post(
        PATH,
        data={"file": (io.BytesIO(csv_file(GOOD_AND_BAD)), "u.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    job = job_id_of(upload(root, csv_file(GOOD_AND_BAD)))
    assert root.post(f"{PATH}/{job}/apply").status_code == 400
    assert state(svc) == before


def test_another_administrators_upload_id_is_not_found_and_nothing_changes(app, root, svc):
    job = job_id_of(upload(root, csv_file(GOOD_AND_BAD)))
    make_admin(svc, "other")
    other = signed_in(app, "other")
    before = state(svc)
    assert other.get(f"{PATH}/{job}").status_code == 404
    assert other.get(f"{PATH}/{job}/status.json").status_code == 404
    token = console_csrf(other, PATH)
    assert other.post(f"{PATH}/{job}/apply", data={"csrf_token": token}).status_code == 404
    assert state(svc) == before
    # the owner still has it
    assert root.get(f"{PATH}/{job}").status_code == 200


def test_the_same_administrator_in_another_session_cannot_use_the_id(app, root, svc):
    job = job_id_of(upload(root, csv_file(GOOD_AND_BAD)))
    elsewhere = signed_in(app)  # same account, another browser
    assert elsewhere.get(f"{PATH}/{job}").status_code == 404


def test_an_expired_upload_is_gone_and_deleted(root, svc, clock):
    job = job_id_of(upload(root, csv_file(GOOD_AND_BAD)))
    before = state(svc)
    clock.advance(import_jobs.TTL + 1)
    page = root.get(f"{PATH}/{job}")
    assert page.status_code == 404
    assert "expired" in page.get_data(as_text=True)
    token = console_csrf(root, PATH)
    assert root.post(f"{PATH}/{job}/apply", data={"csrf_token": token}).status_code == 404
    assert not (import_jobs_root(svc) / job).exists()
    assert state(svc) == before


def test_a_malformed_upload_id_is_not_found(root):
    assert root.get(f"{PATH}/..%2F..%2Fsecret_key").status_code == 404
    assert root.get(f"{PATH}/{'A' * 22}").status_code == 404


def test_cancel_deletes_the_upload(root, svc):
    job = job_id_of(upload(root, csv_file(GOOD_AND_BAD)))
    token = console_csrf(root, f"{PATH}/{job}")
    assert root.post(f"{PATH}/{job}/discard", data={"csrf_token": token}).status_code == 303
    assert not (import_jobs_root(svc) / job).exists()


def test_a_large_file_shows_progress_and_a_status_endpoint(root, svc, monkeypatch):
    """The request stops waiting for the run: the progress page (a <progress> bar and the
    polling script) and the JSON status; once the run ends, the page is the preview."""
    gate = threading.Event()
    real = import_jobs._run

    def slow_run(*args):
        gate.wait(10)
        real(*args)

    monkeypatch.setattr(import_jobs, "_run", slow_run)
    monkeypatch.setattr(users_bulk, "WAIT_SECONDS", 0.01)
    rows = [["username", "email"]] + [[f"u{i}", f"u{i}@example.org"] for i in range(300)]
    job = job_id_of(upload(root, csv_file(rows)))
    page = root.get(f"{PATH}/{job}").get_data(as_text=True)
    assert "<progress" in page and "admin-import.js" in page
    assert 'http-equiv="refresh"' in page  # without JavaScript a refresh shows the progress
    status = root.get(f"{PATH}/{job}/status.json").get_json()
    assert status["state"] == "previewing"
    gate.set()
    for _ in range(200):
        status = root.get(f"{PATH}/{job}/status.json").get_json()
        if status["state"] != "previewing":
            break
        threading.Event().wait(0.05)
    assert status == {
        "state": "preview",
        "done": 300,
        "total": 300,
        "url": f"{PATH}/{job}",
    }
    assert "Nothing has changed yet" in root.get(f"{PATH}/{job}").get_data(as_text=True)


def test_a_helpdesk_without_create_or_update_may_not_import(app, svc):
    make_admin(svc, "desk", role="Helpdesk")
    client = signed_in(app, "desk")
    assert client.get(PATH).status_code == 403
    assert "/admin/users/import" not in client.get("/admin/").get_data(as_text=True)


def import_jobs_root(svc):
    from pathlib import Path

    return Path(svc.settings.instance_dir) / "uploads" / "import"
