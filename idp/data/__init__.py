"""Data files bundled with the IdP (see README.md here)."""
