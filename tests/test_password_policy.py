"""Every password-policy rule, NIST mode, expiry, account states, step planning, throttling."""

from datetime import UTC, date, datetime, timedelta

from idp.core.policy import (
    LockoutPolicy,
    LoginFacts,
    PasswordPolicy,
    account_state,
    check_password,
    common_passwords,
    normalize_answer,
    password_age,
    plan_steps,
)

STRICT = PasswordPolicy(require_special=True, history=3)


def codes(pw, policy=STRICT, **kw):
    return [v.code for v in check_password(policy, pw, **kw)]


def test_each_rule_is_reported_alone():
    assert codes("Aa1!aaaaaaaaa") == []
    assert codes("Aa1!aa") == ["min_length"]
    assert codes("A" + "a1!" * 50) == ["max_length"]
    assert codes("aa1!aaaaaaaaa") == ["require_upper"]
    assert codes("AA1!AAAAAAAAA") == ["require_lower"]
    assert codes("Aa!!aaaaaaaaa") == ["require_digit"]
    assert codes("Aa1aaaaaaaaaa") == ["require_special"]


def test_personal_information_refused():
    kw = {"username": "jsmith", "email": "john.smith@example.org", "names": ("John", "Smith")}
    assert codes("Xx1!jsmith-zz", **kw) == ["personal"]
    assert codes("Xx1!SMITHzzzz", **kw) == ["personal"]
    assert codes("Xx1!qwvbnmzzz", **kw) == []


def test_common_passwords_refused_case_insensitively():
    assert len(common_passwords()) >= 10_000
    policy = PasswordPolicy(mode="nist", min_length=8)
    assert codes("Password1", policy) == ["common"]
    assert codes("iloveyou", policy) == ["common"]
    assert codes("correct horse staple", policy) == []


def test_history_checked_last_and_only_when_everything_else_passed():
    seen = []

    def in_history(pw):
        seen.append(pw)
        return pw == "Aa1!oldpassword"

    assert codes("Aa1!oldpassword", in_history=in_history) == ["history"]
    assert codes("short", in_history=in_history) == [
        "min_length",
        "require_upper",
        "require_digit",
        "require_special",
    ]
    assert seen == ["Aa1!oldpassword"]


def test_nist_mode_has_no_composition_rules_and_no_expiry():
    nist = PasswordPolicy(mode="nist", min_length=8, max_age_days=30)
    assert codes("alllowercaseletters", nist) == []
    assert codes("short", nist) == ["min_length"]
    old = datetime(2020, 1, 1, tzinfo=UTC)
    assert password_age(nist, old, datetime(2025, 1, 1, tzinfo=UTC)).expired is False


def test_password_age_expiry_and_warning():
    policy = PasswordPolicy(max_age_days=90, warn_days=14)
    changed = datetime(2025, 1, 1, tzinfo=UTC)
    assert password_age(policy, changed, changed + timedelta(days=10)).warn is False
    soon = password_age(policy, changed, changed + timedelta(days=80))
    assert (soon.expired, soon.days_left, soon.warn) == (False, 10, True)
    assert password_age(policy, changed, changed + timedelta(days=90)).expired is True
    assert password_age(policy, None, changed).expired is False


def test_account_state_and_dates():
    today = date(2025, 6, 1)
    assert account_state("active", None, None, today) == "ok"
    for status in ("inactive", "locked", "pending", "expired"):
        assert account_state(status, None, None, today) == status
    assert account_state("active", date(2025, 6, 2), None, today) == "not_yet_active"
    assert account_state("active", date(2025, 6, 1), date(2025, 6, 1), today) == "ok"
    assert account_state("active", None, date(2025, 5, 31), today) == "expired"


def facts(**kw):
    base = dict(
        require_mfa=False,
        enrolled_factors=(),
        must_change_password=False,
        password_expired=False,
        password_expiry_warning=False,
        wanted_acr_level=0,
        local_password=True,
    )
    base.update(kw)
    return LoginFacts(**base)


def test_plan_steps():
    assert plan_steps(facts()) == []
    assert plan_steps(facts(enrolled_factors=("totp",))) == ["mfa"]
    assert plan_steps(facts(require_mfa=True)) == ["mfa"]
    assert plan_steps(facts(wanted_acr_level=2)) == ["mfa"]
    assert plan_steps(facts(must_change_password=True, require_mfa=True)) == ["mfa", "set_password"]
    assert plan_steps(facts(password_expired=True)) == ["set_password"]
    assert plan_steps(facts(password_expiry_warning=True)) == ["expiry_notice"]
    # A directory's password is changed in the directory, not here.
    assert plan_steps(facts(must_change_password=True, local_password=False)) == []


def test_ip_delay_is_progressive_and_capped():
    p = LockoutPolicy(
        ip_delay_after=3, ip_delay_seconds=0.5, ip_max_delay_seconds=4, ip_max_failures=10
    )
    assert [p.ip_delay(n) for n in (0, 3, 4, 5, 6, 7, 9)] == [0, 0.5, 1.0, 2.0, 4, 4, 4]
    assert not p.ip_refused(9) and p.ip_refused(10)


def test_security_answers_normalized():
    assert normalize_answer("  St. Louis ") == normalize_answer("st louis")
    assert normalize_answer("Zürich") == normalize_answer("zurich")
