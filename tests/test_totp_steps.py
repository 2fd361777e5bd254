"""TOTP codes against time steps (idp/backends/totp.py ``matching_step``, RFC 6238 §5.2) on
fixed instants: one step of skew either side, to the second, for 6 and 8 digits and other
periods; what a code may look like. tests/test_mfa_totp.py and tests/test_boundaries.py prove
the same through the MFA step, with replays and the stored step."""

from __future__ import annotations

import pyotp
import pytest

from idp.backends.totp import SKEW_STEPS, matching_step, new_secret, normalize

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
T0 = 1_800_000_000  # the first second of step T0 // 30


def test_the_window_is_one_step_either_side():
    assert SKEW_STEPS == 1


@pytest.mark.parametrize(("digits", "period"), [(6, 30), (8, 30), (6, 60)])
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_code_within_one_step_matches_its_step(digits, period, offset):
    totp = pyotp.TOTP(SECRET, digits=digits, interval=period)
    step = T0 // period + offset
    code = totp.at(step * period)
    assert matching_step(SECRET, code, digits, period, T0) == step


@pytest.mark.parametrize(("digits", "period"), [(6, 30), (8, 30), (6, 60)])
@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_a_code_two_or_more_steps_away_matches_nothing(digits, period, offset):
    totp = pyotp.TOTP(SECRET, digits=digits, interval=period)
    code = totp.at((T0 // period + offset) * period)
    assert matching_step(SECRET, code, digits, period, T0) is None


@pytest.mark.parametrize(("now", "step"), [(T0 + 59, T0 // 30), (T0 + 60, None),
                                           (T0 - 30, T0 // 30), (T0 - 31, None)])
def test_the_window_to_the_second(now, step):
    """The code of step N is good from the first second of step N-1 to the last of N+1."""
    code = pyotp.TOTP(SECRET).at(T0)
    assert matching_step(SECRET, code, 6, 30, now) == step


def test_what_a_code_may_look_like():
    code = pyotp.TOTP(SECRET).at(T0)
    spaced = f"{code[:3]} {code[3:]}"
    dashed = f"{code[:3]}-{code[3:]}"
    for form in (code, spaced, dashed, f"\t{code}\n"):
        assert matching_step(SECRET, form, 6, 30, T0) == T0 // 30
    for wrong in ("", None, code[:5], code + "0", "12345a", "١٢٣٤٥٦", code.replace(code[0], "x")):
        assert matching_step(SECRET, wrong, 6, 30, T0) is None
    assert normalize(" 12-3 4 ") == "1234" and normalize(None) == ""
    other = pyotp.TOTP(new_secret()).at(T0)
    assert other == code or matching_step(SECRET, other, 6, 30, T0) is None


def test_new_secrets_are_160_bits_of_base32():
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(len(s) == 32 and pyotp.TOTP(s).now().isdigit() for s in secrets)
