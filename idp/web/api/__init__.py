"""The admin REST API ``/api/v1`` (``docs/api.md``): one module per area, each declaring its
operations with :func:`framework.operation`; ``openapi.py`` publishes them."""

from __future__ import annotations

from . import (  # noqa: F401  (each module registers its operations on bp)
    audit,
    fields,
    groups,
    openapi,
    org,
    roles,
)
from .framework import bp

__all__ = ["bp"]
