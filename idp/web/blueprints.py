"""The surfaces ``create_app`` mounts, named relative to the ``idp`` package. A list of names
and nothing else: ``idp serve`` finds these modules before any worker starts without importing
them (the workers do)."""

# Each module has a Blueprint named ``bp``; one line per surface.
BLUEPRINTS = [
    ".web.assets",
    ".web.health",
    ".web.metrics",
    ".web.wellknown",
    ".web.login",
    ".web.password",
    ".web.account",
    ".web.account_gdpr",
    ".web.account_devices",
    ".web.security_digest",
    ".web.mfa",
    ".web.webauthn",
    ".web.broker_start",
    ".web.broker",
    ".web.broker_saml",
    ".web.oidc.discovery",
    ".web.oidc.authorize",
    ".web.oidc.consent",
    ".web.oidc.token",
    ".web.oidc.userinfo",
    ".web.oidc.logout",
    ".web.oidc.registration",
    ".web.oidc.device",
    ".web.saml",
    ".web.api",
    ".web.scim",
    ".web.admin",
]
