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
