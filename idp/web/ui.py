"""What every page's frame shows: the design system's files, the branding colours laid over
its light theme, and the signed-in person in the header."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import g, url_for

from .assets import asset_url

_HEX = re.compile(r"#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?")
# The design system's own light values: a branding setting equal to these changes nothing.
_DEFAULTS = {"primary_color": "#1d4ed8", "background_color": "#f5f6f8", "text_color": "#1b1f24"}
_PROPERTY = {"primary_color": "--primary", "background_color": "--bg", "text_color": "--text"}


def branding_css(branding: Any) -> str:
    """The custom properties the branding settings override, for the light theme only (a brand
    colour chosen for white backgrounds rarely reads on dark ones). Only ``#rgb`` / ``#rrggbb``
    values are used, so a setting can never inject CSS."""
    rules = []
    for key, prop in _PROPERTY.items():
        value = str(getattr(branding, key, "") or "").strip()
        if _HEX.fullmatch(value) and value.lower() != _DEFAULTS[key]:
            rules.append(f"{prop}: {value};")
            if key == "primary_color":
                rules.append(f"--primary-hover: {value};")
    if not rules:
        return ""
    body = " ".join(rules)
    return (
        f':root[data-theme="light"] {{ {body} }} '
        f"@media not (prefers-color-scheme: dark) {{ :root {{ {body} }} }}"
    )


@dataclass(frozen=True)
class Person:
    display_name: str
    initials: str
    avatar_url: str | None


def signed_in_person() -> Person | None:
    """Who is signed in, for the header, when the page loaded them (``g.signed_in_user``)."""
    user = g.get("signed_in_user")
    if user is None:
        return None
    full = " ".join(p for p in (user.given_name, user.family_name) if p)
    name = full or user.username
    parts = [p for p in (user.given_name, user.family_name) if p] or [user.username]
    initials = "".join(p[0] for p in parts[:2]).upper()
    avatar = url_for("account.avatar_file", name=user.avatar) if user.avatar else None
    return Person(display_name=name, initials=initials, avatar_url=avatar)


def frame_context(branding: Any) -> dict[str, Any]:
    return {
        "asset": asset_url,
        "branding_css": lambda: branding_css(branding),
        "signed_in_person": signed_in_person(),
    }
