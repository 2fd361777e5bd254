"""Admin console: settings (filled in by its area)."""

from __future__ import annotations
