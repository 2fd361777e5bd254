"""The Content-Security-Policy of every response and its per-response script nonce."""

from __future__ import annotations

import secrets

from flask import g

# Set on every response (kept when a view set its own): no MIME sniffing, no referrer to
# relying parties, never framed (old browsers; frame-ancestors for the others).
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)


def csp_nonce() -> str:
    """This response's script nonce (CSP Level 3, nonce-source; "Nonce Reuse": a unique value
    of at least 128 bits each time a policy is sent), so an injected ``<script>`` cannot carry
    it. Templates read it as ``csp_nonce``."""
    nonce = g.get("csp_nonce")
    if nonce is None:
        nonce = g.csp_nonce = new_nonce()
    return nonce


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def content_security_policy(nonce: str) -> str:
    """The policy of every response. Scripts: this origin's files and the inline scripts that
    carry the nonce, nothing else (no 'unsafe-inline', so neither an injected ``<script>`` nor
    an ``on...=`` attribute runs); no plugins; no ``<base>`` to redirect relative URLs; never
    framed (clickjacking). ``form-action`` is left out on purpose, as Keycloak does: the SAML
    POST binding and OAuth ``form_post`` post to the relying party's origin, and browsers also
    check the redirects that follow a form post (the login form's answer goes on to the
    relying party's redirect URI), which a fixed list of origins cannot know."""
    return (
        f"script-src 'self' 'nonce-{nonce}'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
