"""idp/backends/totp.py ``save`` and ``check`` against a real database on the frozen clock: what a
saved seed row holds, a code accepted once and its step spent, no code of that step or an
earlier one after it, a seed that cannot be opened, a user without a seed, the other user's
seed. The step-matching itself is tests/test_totp_steps.py; the MFA step of the login
tests/test_mfa_totp.py and tests/test_boundaries.py. Written against the surviving mutants of
tests/mutation_kit.py `totp`; every refusal asserts that the row did not change."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pyotp
import pytest
from instance_template import initialised
from login_kit import make_user

from idp.backends import totp
from idp.clock import FrozenClock
from idp.storage.models_mfa import MfaTotp

T0 = 1_800_000_000  # the first second of a 30 s step
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    return FrozenClock(float(T0))


@pytest.fixture(scope="module")
def svc(tmp_path_factory, clock) -> Iterator:
    from idp.app import create_app

    instance = tmp_path_factory.mktemp("totp") / "instance"
    app = create_app(initialised(instance), clock=clock)
    yield app.extensions["idp"]
    app.extensions["idp"].engine.dispose()


@pytest.fixture(autouse=True)
def _at_t0(clock: FrozenClock) -> None:
    clock.advance(T0 - clock.now())


_users = iter(range(1000))


@pytest.fixture
def uid(svc) -> int:
    return make_user(svc, f"t{next(_users)}", password=None)


def _save(svc, uid: int, first_step: int | None = None, secret: str = SECRET) -> None:
    with svc.sessions.begin() as db:
        totp.save(svc, db, uid, secret, first_step)


def _row(svc, uid: int) -> tuple | None:
    with svc.sessions() as db:
        row = db.get(MfaTotp, uid)
        if row is None:
            return None
        return (
            row.secret_sealed,
            row.digits,
            row.period,
            row.last_step,
            row.created_at,
            row.last_used_at,
        )


def _code(offset_steps: int = 0, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).at(T0 + 30 * offset_steps)


def test_a_saved_seed_row(svc, clock, uid):
    clock.advance(-5)
    _save(svc, uid, first_step=T0 // 30 - 1)
    sealed, digits, period, last_step, created, used = _row(svc, uid)
    assert (digits, period, last_step, used) == (6, 30, T0 // 30 - 1, None)
    assert created.replace(tzinfo=UTC) == datetime.fromtimestamp(T0 - 5, UTC)
    assert svc.sealer.open(sealed, f"totp:{uid}").decode() == SECRET
    assert SECRET not in sealed


def test_saving_again_replaces_the_seed_and_forgets_the_spent_step(svc, clock, uid):
    _save(svc, uid, first_step=T0 // 30)
    assert totp.check(svc, uid, _code(1))
    other = pyotp.random_base32(32)
    clock.advance(60)
    _save(svc, uid, secret=other)
    sealed, _, _, last_step, created, used = _row(svc, uid)
    assert last_step is None and used is None
    assert created.replace(tzinfo=UTC) == datetime.fromtimestamp(T0 + 60, UTC)
    assert svc.sealer.open(sealed, f"totp:{uid}").decode() == other
    assert not totp.check(svc, uid, _code(2))  # the old seed's code
    assert totp.check(svc, uid, pyotp.TOTP(other).at(T0 + 60))


def test_a_code_spends_its_step_once(svc, clock, uid):
    _save(svc, uid)
    assert totp.check(svc, uid, _code())
    _, _, _, last_step, _, used = _row(svc, uid)
    assert last_step == T0 // 30
    assert used.replace(tzinfo=UTC) == datetime.fromtimestamp(T0, UTC)
    before = _row(svc, uid)
    clock.advance(10)
    assert not totp.check(svc, uid, _code())
    assert not totp.check(svc, uid, _code(-1))  # an earlier step, still inside the window
    assert _row(svc, uid) == before
    assert totp.check(svc, uid, _code(1))  # the next step's code, early
    assert _row(svc, uid)[3] == T0 // 30 + 1


def test_a_replay_is_logged(svc, uid, caplog):
    _save(svc, uid, first_step=T0 // 30)
    with caplog.at_level(logging.WARNING, logger="idp.mfa"):
        assert not totp.check(svc, uid, _code())
    assert [r.getMessage() for r in caplog.records if r.name == "idp.mfa"] == [
        f"TOTP code replayed for user {uid} (step {T0 // 30})"
    ]


def test_the_step_of_the_confirming_code_is_spent(svc, uid):
    _save(svc, uid, first_step=T0 // 30)
    before = _row(svc, uid)
    assert not totp.check(svc, uid, _code())
    assert _row(svc, uid) == before
    assert totp.check(svc, uid, _code(1))


def test_no_seed_and_a_wrong_code_match_nothing(svc, uid):
    assert not totp.check(svc, uid, _code())
    assert _row(svc, uid) is None
    _save(svc, uid)
    before = _row(svc, uid)
    for wrong in (
        "",
        "000000" if _code() != "000000" else "111111",
        _code(2),
        _code(-2),
        _code(secret="KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU"),
    ):
        assert not totp.check(svc, uid, wrong), wrong
    assert _row(svc, uid) == before


def test_a_seed_bound_to_another_user_does_not_open(svc, uid, caplog):
    """A sealed seed copied to another user's row: an error line, no code accepted."""
    other = make_user(svc, f"t{next(_users)}", password=None)
    _save(svc, other)
    with svc.sessions.begin() as db:
        db.add(
            MfaTotp(
                user_id=uid, secret_sealed=db.get(MfaTotp, other).secret_sealed, digits=6, period=30
            )
        )
    before = _row(svc, uid)
    with caplog.at_level(logging.ERROR, logger="idp.mfa"):
        assert not totp.check(svc, uid, _code())
    assert [r.getMessage() for r in caplog.records if r.name == "idp.mfa"] == [
        f"TOTP seed of user {uid} cannot be opened (key changed?)"
    ]
    assert _row(svc, uid) == before


def test_the_row_says_digits_and_period(svc, uid):
    """A seed saved with 8 digits and 60 s keeps them after the settings change."""
    with svc.sessions.begin() as db:
        db.add(MfaTotp(user_id=uid, secret_sealed=totp.seal(svc, uid, SECRET), digits=8, period=60))
    assert not totp.check(svc, uid, _code())
    assert totp.check(svc, uid, pyotp.TOTP(SECRET, digits=8, interval=60).at(T0))
