"""Distinguished names compared RDN by RDN (idp.backends.ldap_dn), as the memberOf check of
the LDAP backend uses them: a DN whose text ends with the group base but which is not below it
does not count; the same DN in other case and spacing, or with another escape of the same
character, does."""

from __future__ import annotations

import pytest

from idp.backends import ldap_dn

BASE = "ou=groups,dc=corp"


@pytest.mark.parametrize(
    "dn",
    [
        "cn=evil,ou=x\\,ou=groups,dc=corp",  # an escaped comma: the OU "x,ou=groups"
        "cn=evil,ou=x\\2cou=groups,dc=corp",  # the same comma in hex
        "cn=evil,ou=notou=groups,dc=corp",  # an unescaped '=' inside a value
        "cn=evil,ou=groups+cn=x,dc=corp",  # a multi-valued RDN is another entry
        "cn=evil,ou=groups,dc=corp,dc=evil",  # the base in the middle
        "cn=evil,ou=groups\\,dc=corp",  # one RDN whose value is "groups,dc=corp"
        'cn=evil,ou="groups,dc=corp"',  # the same, RFC 1779 quoted
        "cn=evil,dc=corp",  # above the base
        "not a dn ou=groups,dc=corp",  # not a DN at all
        "cn=evil,ou=groups,dc=corp\\",  # a dangling escape
    ],
)
def test_a_dn_whose_text_ends_with_the_base_but_is_not_below_it_is_outside(dn):
    assert ldap_dn.within(dn, BASE) is False


@pytest.mark.parametrize(
    "dn",
    [
        "cn=admins,ou=groups,dc=corp",
        "CN=Admins,OU=Groups,DC=Corp",
        "cn=admins , ou = groups ,  dc=corp",
        "cn=admins;ou=groups;dc=corp",  # RFC 2253's other separator
        "cn=admins,ou=Gr\\6fups,dc=CORP",  # a hex escape of a plain letter
        "cn=a\\,b,ou=sub,ou=groups,dc=corp",  # deeper, with an escaped comma of its own
        "ou=groups,dc=corp",  # the base itself, as a subtree search finds it
    ],
)
def test_the_same_base_in_other_case_spacing_or_escapes_is_inside(dn):
    assert ldap_dn.within(dn, BASE) is True
    assert ldap_dn.within(dn, "OU=Groups, DC=Corp") is True


def test_escaped_values_are_compared_unescaped():
    assert ldap_dn.key("cn=a\\,b,dc=x") == ldap_dn.key("CN=A\\2cB, DC=X")
    assert ldap_dn.key('cn="a,b",dc=x') == ldap_dn.key("cn=a\\,b,dc=x")
    assert ldap_dn.key("cn=a\\,b,dc=x") != ldap_dn.key("cn=a,b=,dc=x")
    assert ldap_dn.first_value("cn=K\\C3\\B6ln \\2B Co,ou=groups,dc=corp") == ("cn", "Köln + Co")
    assert ldap_dn.normalized("CN=Ops , OU=Groups,DC=Corp") == ldap_dn.normalized(
        "cn=ops,ou=groups,dc=corp"
    )


@pytest.mark.parametrize("dn", ["cn", "=x", "cn=a,", "cn=a\\", 'cn="open', "cn=\\ff\\fe", "c n=a"])
def test_malformed_dns_are_refused(dn):
    with pytest.raises(ldap_dn.InvalidDn):
        ldap_dn.key(dn)
