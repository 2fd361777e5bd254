"""The [ldap] settings: URL schemes, required keys, choices, and the bind password redacted."""

from __future__ import annotations

import pytest

from idp.errors import ConfigError
from idp.settings import load_settings


def test_bind_password_is_redacted_and_env_vars_follow():
    settings = load_settings(
        environ={
            "IDP_LDAP_BIND_PASSWORD": "s3cret-pw",
            "IDP_LDAP_URLS": "ldaps://dc1.example.org,ldap://dc2.example.org:3268",
        }
    )
    assert settings.ldap.bind_password == "s3cret-pw"
    assert settings.ldap.urls == ("ldaps://dc1.example.org", "ldap://dc2.example.org:3268")
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in repr(settings.ldap)


@pytest.mark.parametrize(
    "ldap,fragment",
    [
        ({"url": "http://dc1.example.org"}, "ldap:// or ldaps://"),
        ({"urls": ["ldaps://ok.example.org", "ftp://x"]}, "ldap:// or ldaps://"),
        ({"url": "ldap://"}, "ldap:// or ldaps://"),
        ({"enabled": True}, "needs ldap.url"),
        ({"enabled": True, "url": "ldap://dc1"}, "user_base_dn"),
        ({"user_filter": "(uid=*)"}, "{username}"),
        ({"group_filter": "(member=x)"}, "{user_dn}"),
        ({"nested_groups": "sometimes"}, "nested_groups"),
        ({"group_membership": "guess"}, "group_membership"),
        ({"sync_page_size": 0}, "sync_page_size"),
        ({"group_role_map": ["no-equals-sign"]}, "group=role"),
    ],
)
def test_invalid_ldap_settings_are_refused(ldap, fragment):
    with pytest.raises(ConfigError) as err:
        load_settings({"ldap": ldap}, environ={})
    assert fragment in str(err.value)


# --- [ldap] enabled = true turns directory sign-in on by itself ----------------------------------

_LDAP_TOML = (
    "[ldap]\n"
    "enabled = true\n"
    'url = "ldaps://dc1.example.org"\n'
    'bind_dn = "cn=idp,ou=service,dc=example,dc=org"\n'
    'bind_password = "pw"\n'
    'user_base_dn = "ou=people,dc=example,dc=org"\n'
)
_LDAP_ENV = {
    "IDP_LDAP_ENABLED": "true",
    "IDP_LDAP_URL": "ldaps://dc1.example.org",
    "IDP_LDAP_USER_BASE_DN": "ou=people,dc=example,dc=org",
}
_CONFLICT = (
    'setting ldap.enabled is true but auth.backends = ["local"] leaves out "ldap": '
    'add it (e.g. ["local", "ldap"]) or leave auth.backends unset'
)


def _toml(tmp_path, text: str) -> dict[str, str]:
    path = tmp_path / "idp.toml"
    path.write_text(text)
    return {"IDP_CONFIG": str(path)}


def test_enabling_ldap_in_the_file_adds_it_to_an_unset_backend_list(tmp_path):
    """The interface's LDAP settings alone (no [auth]) give the chain local first, then LDAP."""
    assert load_settings(environ=_toml(tmp_path, _LDAP_TOML)).auth.backends == ("local", "ldap")


def test_enabling_ldap_in_the_environment_adds_it_too():
    assert load_settings(environ=_LDAP_ENV).auth.backends == ("local", "ldap")
    # ...and from the overrides layer (what create_app(overrides) and the tests use).
    ldap = {"enabled": True, "url": "ldap://dc1", "user_base_dn": "dc=example,dc=org"}
    assert load_settings({"ldap": ldap}, environ={}).auth.backends == ("local", "ldap")


def test_ldap_off_leaves_the_backend_list_alone():
    assert load_settings(environ={}).auth.backends == ("local",)
    env = {**_LDAP_ENV, "IDP_LDAP_ENABLED": "false"}
    assert load_settings(environ=env).auth.backends == ("local",)


def test_an_explicit_list_that_names_ldap_keeps_its_order(tmp_path):
    text = '[auth]\nbackends = ["ldap", "local"]\n' + _LDAP_TOML
    assert load_settings(environ=_toml(tmp_path, text)).auth.backends == ("ldap", "local")
    env = {**_LDAP_ENV, "IDP_AUTH_BACKENDS": "ldap"}
    assert load_settings(environ=env).auth.backends == ("ldap",)


@pytest.mark.parametrize(
    "where",
    ["file", "environment", "overrides"],
)
def test_explicit_list_without_ldap_is_refused_even_when_it_is_the_default(tmp_path, where):
    """``backends = ["local"]`` is the default value, but written by the operator it is a choice
    that contradicts ``ldap.enabled``: refused with one line naming both settings."""
    overrides = None
    if where == "file":
        environ = _toml(tmp_path, '[auth]\nbackends = ["local"]\n' + _LDAP_TOML)
    elif where == "environment":
        environ = {**_LDAP_ENV, "IDP_AUTH_BACKENDS": "local"}
    else:
        environ = _LDAP_ENV
        overrides = {"auth": {"backends": ["local"]}}
    with pytest.raises(ConfigError) as err:
        load_settings(overrides, environ=environ)
    assert str(err.value) == _CONFLICT


def test_cli_stops_on_the_conflict_with_exit_2_and_one_line(monkeypatch, capsys, tmp_path):
    from idp.cli import main

    monkeypatch.setenv("IDP_INSTANCE_DIR", str(tmp_path / "instance"))
    monkeypatch.setenv(
        "IDP_CONFIG", _toml(tmp_path, '[auth]\nbackends = ["local"]\n' + _LDAP_TOML)["IDP_CONFIG"]
    )
    assert main(["init"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"idp: configuration error: {_CONFLICT}\n"
    assert not (tmp_path / "instance").exists()  # nothing was created
