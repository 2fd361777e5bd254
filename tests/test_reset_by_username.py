"""The reset request takes a username or an e-mail address (the input keeps its public name
``email``; its label says "Username or e-mail"). Whatever is typed, and whether or not an account
has it, the answer and the work done are the same (no account enumeration)."""

from __future__ import annotations

from login_kit import link_in, make_user, outbox
from test_reset_timing import Recorder, _main, _record


def _post(app, value: str):
    from login_kit import csrf

    client = app.test_client()
    page = client.get("/password/reset").get_data(as_text=True)
    return client.post("/password/reset", data={"csrf_token": csrf(page), "email": value})


def test_the_form_asks_for_a_username_or_an_e_mail(app):
    page = app.test_client().get("/password/reset").get_data(as_text=True)
    assert 'name="email"' in page and "Username or e-mail" in page
    assert 'type="email"' not in page  # a username must be typable (no browser e-mail check)


def test_a_username_sends_the_link_to_the_accounts_address(app, svc):
    make_user(svc, "ann")
    resp = _post(app, "ANN")  # usernames are case-insensitive
    assert resp.status_code == 200
    assert svc.mail_queue is None or svc.mail_queue.wait_idle(10)
    (mail,) = outbox(svc)
    assert mail["To"] == "ann@example.org" and link_in(mail, "/password/reset/")


def test_username_unknown_name_and_address_get_the_same_page_and_work(make_app, monkeypatch):
    app = make_app()
    svc = app.extensions["idp"]
    make_user(svc, "ann")
    recorder = Recorder(svc, monkeypatch)
    try:
        runs = [
            _record(recorder, app.test_client(), "/password/reset", {"email": value})
            for value in ("ann", "ghost", "ann@example.org", "ghost@example.org")
        ]
    finally:
        recorder.done()
    first = runs[0]
    for other in runs[1:]:
        assert other["sql"] == first["sql"] and other["store"] == first["store"]
        assert other["jobs"] == first["jobs"] == ["reset"]
    pages = [_main(_post(app, value)) for value in ("ann", "nobody-here")]
    assert pages[0] == pages[1]


def test_an_empty_or_overlong_entry_is_refused_and_sends_nothing(app, svc):
    make_user(svc, "ann")
    for value in ("", "   ", "a" * 321):
        resp = _post(app, value)
        assert resp.status_code == 400
    assert svc.mail_queue is None or svc.mail_queue.wait_idle(10)
    assert outbox(svc) == []
