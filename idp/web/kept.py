"""Pages kept rendered: for pages on every sign-in's path that differ between requests only in
a few string values (a CSRF token, a request id, a SAML message), the template is rendered once
per language and shape with markers where those values go, and each request puts its values in,
HTML-escaped. Rendering the login page this way costs a fraction of rendering it (see
docs/login.md, "Speed").

A template, or an operator's override of it, that uses a value anywhere but in HTML text or an
attribute value (a URL, JSON, a filter that changes it) leaves a marker broken or encoded; such
a template is rendered every time instead, so an override never gets a wrong page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import render_template, request
from markupsafe import escape

from .csp import csp_nonce
from .current import svc
from .i18n import html_lang

_MARKER = re.compile("\x00([a-z_]{1,32})\x00")
# Markers that went through a URL or JSON encoder, or a filter: the shell would be wrong.
_BROKEN = ("\x00", "%00", "\\u0000", "&#0;")
# The response's script nonce (idp.web.csp.csp_nonce) is a value of every kept page: a page with
# an inline script must never be kept with the nonce of the request that first rendered it.
_NONCE = "csp_nonce"


def _with_nonce(context: dict[str, Any], nonce: str | None) -> dict[str, Any]:
    return {**context, _NONCE: nonce}


def _mark(name: str) -> str:
    return f"\x00{name}\x00"


def render_kept(
    template: str,
    values: dict[str, str | None],
    context: Callable[[dict[str, str | None]], dict[str, Any]],
    shape: tuple[Any, ...] = (),
) -> str:
    """The page for ``values`` (None = absent, which may change the page's shape). ``context``
    builds the template's context from the values (or their markers); ``shape`` names anything
    else the page depends on. Both must not hold per-request data beyond ``values``."""
    kept = svc().kept_pages
    values = {**values, _NONCE: csp_nonce()}
    # The mount point is in the key too: links are built under it.
    present = frozenset(k for k, v in values.items() if v is not None)
    key = (template, html_lang(), request.script_root, shape, present)
    shell = kept.get(key)
    if shell is None:
        marked = {k: None if v is None else _mark(k) for k, v in values.items()}
        page = render_template(template, **_with_nonce(context(marked), marked[_NONCE]))
        rest = _MARKER.sub("", page)
        wanted = {k for k, v in marked.items() if v}
        # A page without an inline script does not use the nonce; every other value it must.
        found = set(_MARKER.findall(page)) | {_NONCE}
        usable = found == wanted and not any(b in rest for b in _BROKEN)
        # Split once at the markers: text, name, text, name, ..., text.
        shell = tuple(_MARKER.split(page)) if usable else ()
        if len(kept) < 256:  # languages x shapes: a handful; the bound is only a safeguard
            kept[key] = shell
    if not shell:
        return render_template(template, **_with_nonce(context(values), values[_NONCE]))
    parts = list(shell)
    for i in range(1, len(parts), 2):
        parts[i] = escape(values[parts[i]])
    return "".join(parts)
