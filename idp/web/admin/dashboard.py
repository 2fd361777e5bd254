"""Admin console: the dashboard at ``/admin/``."""

from __future__ import annotations

from flask import render_template

from . import bp


@bp.route("/")
def dashboard():
    return render_template("admin/dashboard.html", active="admin.dashboard")
