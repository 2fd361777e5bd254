"""The console's one Blueprint, ``admin`` at ``/admin``, in a module of its own so the area
modules can add routes to it without importing the package that imports them (no cycle)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
