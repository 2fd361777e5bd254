"""LDAP tier: tests against a real slapd."""
