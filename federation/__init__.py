"""SAML trust: metadata loading, verification and refresh, federation aggregates."""
