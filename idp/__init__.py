"""A standalone OpenID Connect and SAML 2.0 identity provider."""

__version__ = "0.1.0"
