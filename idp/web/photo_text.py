"""The words of a refused picture (``idp.manage.photos.PhotoRefused``) on the account page and
in the console, in the reader's language."""

from __future__ import annotations

from flask_babel import gettext as _

from ..manage.photos import MIN_PX, PhotoRefused


def refusal_text(exc: PhotoRefused) -> str:
    if exc.code == "too_big":
        return _("The picture is larger than 2 MB.")
    if exc.code == "format":
        return _("Only JPEG and PNG pictures are accepted.")
    if exc.code == "too_many_pixels":
        return _("The picture is too large.")
    if exc.code == "too_small":
        return _("The picture must be at least %(n)s×%(n)s pixels.", n=MIN_PX)
    return _("This file is not a JPEG or PNG picture.")
