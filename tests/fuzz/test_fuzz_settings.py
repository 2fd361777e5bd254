"""Settings (idp.settings.load_settings) from generated layers: override dicts (what a TOML file
and ``idp config apply`` give: typed values, the wrong types, NaN and infinities, unknown
keys) and environment variables (text). Each load is a ``ConfigError`` with one readable line
(never another exception, never a secret in it), or frozen settings whose every value has its
default's type (a list as a tuple, no non-finite number), whose repr shows no secret, and that
load again to themselves (a fixed point: deriving twice changes nothing)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from idp.errors import ConfigError
from idp.settings import env_name, load_defaults, load_settings

DEFAULTS = load_defaults()
KEYS = sorted(  # (section or None, key), top-level ones first
    [(None, k) for k, v in DEFAULTS.items() if not isinstance(v, dict)]
    + [(k, s) for k, v in DEFAULTS.items() if isinstance(v, dict) for s in v],
    key=lambda pair: (pair[0] or "", pair[1]),
)
SECRET = "s3cr3t-PW"  # put in every generated URL's password: it must never be shown

_BOUNDED = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

_URLS = st.builds(
    lambda scheme, host, rest: f"{scheme}://user:{SECRET}@{host}{rest}",
    st.sampled_from(
        [
            "https",
            "http",
            "redis",
            "rediss",
            "redis+sentinel",
            "smtp",
            "smtps",
            "postgresql+psycopg",
            "sqlite",
            "ftp",
            "",
        ]
    ),
    st.sampled_from(["h.example", "[::1]", "[x", "", "h:1,g:2", "h:99999", "h:x"]),
    st.sampled_from(["", "/", "/0", "/svc/1", "/db?x=1", "#f", "/a/b/c"]),
)


def _value_like(default, key: str):
    """Values of the default's kind, and some of the wrong kind; URLs with a password for the
    URL settings (the only ones whose values are secret in part)."""
    wrong = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=8)
        | st.lists(st.integers(), max_size=2)
    )
    if isinstance(default, bool):
        right = st.booleans()
    elif isinstance(default, int):
        right = st.integers(-(2**40), 2**40) | st.sampled_from([0, 1, 65535, 65536, -1])
    elif isinstance(default, float):
        right = st.floats() | st.sampled_from([0.0, 0.5, 1.0, -0.5, 1.5])
    elif isinstance(default, list):
        right = st.lists(
            st.text(max_size=12)
            | st.sampled_from(
                ["10.0.0.0/8", "::1", "127.0.0.1", "0.0.0.0/0", "300.1.1.1", "fe80::/10"]
            ),
            max_size=3,
        )
    else:
        right = st.text(max_size=20) | st.just(default)
        if key.endswith("url"):
            right = right | _URLS | _URLS
    return st.one_of(st.just(default), st.just(default), right, right, wrong)


@st.composite
def layers(draw) -> tuple[dict, dict]:
    """(overrides, environment) naming some settings."""
    overrides: dict = {}
    for section, key in draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True)):
        value = draw(_value_like(DEFAULTS[section][key] if section else DEFAULTS[key], key))
        if section:
            overrides.setdefault(section, {})[key] = value
        else:
            overrides[key] = value
    if draw(st.integers(0, 9)) == 0:
        overrides[draw(st.sampled_from(["nope", "server"]))] = draw(st.sampled_from([1, {"x": 1}]))
    environ = {}
    for section, key in draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True)):
        environ[env_name(section, key)] = draw(
            st.text(st.characters(blacklist_characters="\x00"), max_size=12)
            | (_URLS if key.endswith("url") else st.nothing())
            | st.sampled_from(
                [
                    "nan",
                    "inf",
                    "-1",
                    "1e400",
                    "true",
                    "off",
                    "[1,2]",
                    '["a"]',
                    "[",
                    "0x10",
                    " 8080 ",
                ]
            )
        )
    if draw(st.integers(0, 9)) == 0:
        environ["IDP_NO_SUCH_SETTING"] = "1"
    return overrides, environ


def _plain(section) -> dict:
    """The settings as a layer of overrides again (tuples back to lists)."""
    return {
        k: _plain(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v
        for k, v in (section.as_dict() if not isinstance(section, dict) else section).items()
    }


def _check_types(loaded) -> None:
    for section, key in KEYS:
        default = DEFAULTS[section][key] if section else DEFAULTS[key]
        value = loaded[section][key] if section else loaded[key]
        kind = tuple if isinstance(default, list) else type(default)
        assert type(value) is kind, (section, key, value)
        if kind is float:
            assert math.isfinite(value), (section, key, value)


@_BOUNDED
@given(layer=layers())
@example(layer=({"issuer": "http://[x"}, {}))
@example(layer=({"redis_url": f"redis://u:{SECRET}@[x"}, {}))
@example(layer=({"instance_dir": "a\x00b"}, {}))
@example(layer=({"lockout": {"ip_delay_seconds": math.nan}}, {}))
@example(layer=({}, {"IDP_LOCKOUT_IP_MAX_DELAY_SECONDS": "inf"}))
@example(layer=({"redis_url": f"http://u:{SECRET}@h.example"}, {}))
def test_settings_load_or_refuse_in_one_line(tmp_path, layer):
    overrides, environ = layer
    environ = {**environ, "IDP_INSTANCE_DIR": str(tmp_path)}
    try:
        loaded = load_settings(overrides, environ)
    except ConfigError as exc:
        message = str(exc)
        event("ConfigError")
        assert message and "\n" not in message and SECRET not in message, message
        return
    event("loaded")
    _check_types(loaded)
    assert SECRET not in repr(loaded)
    with pytest.raises(AttributeError):
        loaded.issuer = "https://evil.example"
    with pytest.raises(TypeError):
        loaded.server._data["port"] = 1  # the mapping behind a section is read-only
    again = load_settings(_plain(loaded), {})
    assert again.as_dict() == loaded.as_dict()
