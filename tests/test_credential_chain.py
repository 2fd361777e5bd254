"""The credential chain: local backend verdicts, rehash of imported hashes, order of backends."""

from passlib.hash import pbkdf2_sha256
from sqlalchemy import select

from idp.backends.chain import credential_chain
from idp.core.credentials import CredentialChain, Outcome, Verdict
from idp.storage.directory import Directory, NewUser
from idp.storage.models import User


def _user(svc, username, password_hash, source="local"):
    with svc.sessions.begin() as db:
        user = Directory(db).create_user(
            NewUser(username=username, email=f"{username}@example.org", password_hash=password_hash)
        )
        user.source = source


def test_local_backend_verdicts_and_rehash(make_app):
    app = make_app()
    svc = app.extensions["idp"]
    chain = credential_chain(svc)
    _user(svc, "ann", pbkdf2_sha256.hash("correct horse"))
    assert chain.verify("ann", "correct horse").outcome is Outcome.VALID
    # The imported pbkdf2 hash was replaced by argon2id on that successful login.
    with svc.sessions() as db:
        stored = db.scalar(select(User.password_hash).where(User.username == "ann"))
    assert stored.startswith("$argon2id$")
    assert chain.verify("ANN@example.org", "correct horse").outcome is Outcome.VALID
    assert chain.verify("ann", "wrong").outcome is Outcome.INVALID
    assert chain.verify("ann", "").outcome is Outcome.INVALID
    assert chain.verify("nobody", "x").outcome is Outcome.NOT_MINE
    _user(svc, "dirk", None, source="ldap")
    assert chain.verify("dirk", "x").outcome is Outcome.NOT_MINE


class _Fixed:
    def __init__(self, id_, outcome):
        self.id, self.outcome, self.calls = id_, outcome, 0

    def handles(self, kind):
        return kind == "password"

    def verify(self, login, secret):
        self.calls += 1
        return Verdict(self.outcome)


def test_chain_stops_at_first_backend_that_owns_the_login():
    first, second = _Fixed("a", Outcome.NOT_MINE), _Fixed("b", Outcome.UNAVAILABLE)
    third = _Fixed("c", Outcome.VALID)
    verdict = CredentialChain([first, second, third]).verify("x", "y")
    assert verdict.outcome is Outcome.UNAVAILABLE and verdict.backend == "b"
    assert (first.calls, second.calls, third.calls) == (1, 1, 0)
