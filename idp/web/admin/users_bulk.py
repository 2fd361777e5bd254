"""Admin console: users_bulk (filled in by its area)."""

from __future__ import annotations
