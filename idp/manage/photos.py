"""A user's photo (the avatar of ``/account/profile``, the console's "new user" form and
``/api/v1/users/{id}/photo``): one set of rules for all three.

A picture is JPEG or PNG, at most 2 MB, at least 200×200 px and at most 40 megapixels
(decompression bombs); it is re-encoded (metadata such as GPS positions dropped), centre-cropped
to a square and stored as a 256 px PNG under ``{instance_dir}/avatars/<random>.png``, served by
``/avatars/<name>``. Permission to change another user's photo: ``users:accounts:update`` over
that user.
"""

from __future__ import annotations

import io
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ValidationError
from ..services import Services
from ..storage.models import User
from .context import Context

if TYPE_CHECKING:  # Pillow is imported by the upload that needs it, not by every worker
    from PIL import Image

MAX_BYTES = 2 * 1024 * 1024
MIN_PX = 200
SIZE = 256
MAX_PIXELS = 40_000_000


class PhotoRefused(ValidationError):
    """A picture the rules refuse; ``code`` names which rule (``too_big``, ``format``,
    ``too_many_pixels``, ``unreadable``, ``too_small``) for a translated message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def directory(svc: Services) -> Path:
    return Path(svc.settings.instance_dir) / "avatars"


def _square(data: bytes) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_BYTES:
        raise PhotoRefused("too_big", "the picture is larger than 2 MB")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
            probe.verify()  # structural check before decoding pixels
        image = Image.open(io.BytesIO(data))
        if kind not in ("JPEG", "PNG"):
            raise PhotoRefused("format", "only JPEG and PNG pictures are accepted")
        if image.width * image.height > MAX_PIXELS:
            raise PhotoRefused("too_many_pixels", "the picture has too many pixels")
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        raise PhotoRefused("unreadable", "this is not a JPEG or PNG picture") from None
    if min(image.size) < MIN_PX:
        raise PhotoRefused("too_small", f"the picture must be at least {MIN_PX}×{MIN_PX} pixels")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.convert("RGB").crop((left, top, left + side, top + side))
    return square.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def store(svc: Services, data: bytes) -> str:
    """Check ``data`` (PhotoRefused, nothing written) and store it re-encoded; its file name."""
    square = _square(data)
    folder = directory(svc)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_urlsafe(16)}.png"
    square.save(folder / name, format="PNG", optimize=True)
    return name


def _safe(name: str | None) -> bool:
    return bool(name) and name.endswith(".png") and "/" not in name and not name.startswith(".")


def drop(svc: Services, name: str | None) -> None:
    """Remove a stored photo file (nothing for an external URL or no name)."""
    if _safe(name):
        (directory(svc) / name).unlink(missing_ok=True)


def path_of(svc: Services, user: User) -> Path | None:
    """The user's stored photo file, or None."""
    if not _safe(user.avatar):
        return None
    path = directory(svc) / user.avatar
    return path if path.is_file() else None


def _replace(ctx: Context, user: User, name: str | None) -> None:
    old = user.avatar
    user.avatar = name
    ctx.db.flush()
    ctx.audit("user.updated", user.uuid, fields=["avatar"])
    # The old file goes once the change is committed; a new file goes if it is rolled back.
    ctx.after_commit(lambda: drop(ctx.svc, old))


def set_photo(ctx: Context, user: User, data: bytes) -> str:
    """Give ``user`` the picture ``data`` (PhotoRefused when the rules refuse it, nothing
    changed); the stored file name."""
    ctx.require("users:accounts:update", user.id)
    name = store(ctx.svc, data)
    try:
        _replace(ctx, user, name)
    except BaseException:
        drop(ctx.svc, name)
        raise
    return name


def remove_photo(ctx: Context, user: User) -> bool:
    """Take ``user``'s picture away; whether there was one."""
    ctx.require("users:accounts:update", user.id)
    if not user.avatar:
        return False
    _replace(ctx, user, None)
    return True
