"""The SSO session record is read from the store once per request (a SAML sign-in asks for
the session, its relying parties and then adds one), while every request still sees what other
requests and workers wrote before it."""

from __future__ import annotations

from idp.sso.sessions import COOKIE
from idp.web.sso import BrowserSessions as SessionManager


class CountingStore:
    """The app's store, counting reads of session records."""

    def __init__(self, store) -> None:
        self._store = store
        self.session_reads = 0

    def get(self, key):
        if key.startswith("ssoh:"):
            self.session_reads += 1
        return self._store.get(key)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_one_store_read_per_request_and_writes_are_seen_by_the_next(make_app):
    app = make_app()
    svc = app.extensions["idp"]
    counting = CountingStore(svc.store)
    worker = SessionManager(svc)
    worker.store = counting
    other_worker = SessionManager(svc)  # its own manager, the plain store
    made = other_worker.create("user-uuid", ["pwd"], "urn:idp:acr:1fa")
    sid = made.sid
    headers = {"Cookie": f"{COOKIE}={made.cookie}"}

    with app.test_request_context("/saml/sso", headers=headers):
        current = worker.current()
        assert current is not None and current.sid == sid
        assert worker.relying_parties(sid) == {}
        worker.add_relying_party(sid, "saml:https://sp.example", {"session_index": "_1"})
        assert worker.relying_parties(sid) == {"saml:https://sp.example": {"session_index": "_1"}}
        assert counting.session_reads == 1
    # The write reached the store: another worker's next request sees it.
    with app.test_request_context("/", headers=headers):
        assert other_worker.relying_parties(sid) == {
            "saml:https://sp.example": {"session_index": "_1"}
        }
    # And this worker's next request reads again, so it sees the other worker's changes.
    with app.test_request_context("/", headers=headers):
        other_worker.add_relying_party(sid, "oidc:app", {"x": 1})
    with app.test_request_context("/", headers=headers):
        assert set(worker.relying_parties(sid)) == {"saml:https://sp.example", "oidc:app"}
        assert counting.session_reads == 2
        # Ended in this request: later reads in the same request see no session.
        assert worker.destroy(sid, propagate=False) is not None
        assert worker.current() is None
        assert worker.relying_parties(sid) == {}
    with app.test_request_context("/", headers=headers):
        assert other_worker.current() is None
