"""The design system's files (``/assets/idp.css``, ``idp.js``, the favicon), served with a long
cache lifetime: pages link them with ``?v=<content hash>``, so a new release is fetched anew."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from flask import Blueprint, abort, send_from_directory, url_for

bp = Blueprint("assets", __name__)

STATIC = Path(__file__).resolve().parent / "static"
SERVED = {
    "idp.css": "text/css",
    "idp.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
    "admin-import.js": "text/javascript",
}


@cache
def _version(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def asset_url(name: str) -> str:
    """The URL of one design-system file, versioned by its content (templates: ``asset()``)."""
    return url_for("assets.asset", name=name, v=_version(name))


@bp.route("/assets/<name>")
def asset(name: str):
    if name not in SERVED:
        abort(404)
    return send_from_directory(STATIC, name, mimetype=SERVED[name], max_age=86400)


@bp.route("/favicon.ico")
def favicon():
    return send_from_directory(STATIC, "favicon.svg", mimetype="image/svg+xml", max_age=86400)
