"""SCIM errors (RFC 7644 §3.12): an HTTP status, a ``scimType`` where the RFC defines one, and
a detail for people. Every refusal of :mod:`idp.scim` is a :class:`ScimError`; the typed errors
of the management layer and scim2-models' exceptions become one in :func:`scim_error`.

scim2-models is imported where it is used, not with this module: the rate limiter of every
request imports :class:`ScimError` (its 429 under ``/scim/v2``), and scim2-models with its
resource models is ~0.4 s and ~15 MB a worker that never sees a SCIM request does without."""

from __future__ import annotations

from ..errors import Conflict, Forbidden, NotFound
from ..errors import ValidationError as InputError


class ScimError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type

    def body(self) -> dict:
        from scim2_models import Error

        return Error(status=self.status, scim_type=self.scim_type, detail=self.detail).model_dump()


def invalid_value(detail: str) -> ScimError:
    return ScimError(400, detail, "invalidValue")


def scim_error(exc: BaseException) -> ScimError | None:
    """The SCIM error an exception stands for, or None for an unexpected one (a 500)."""
    from pydantic import ValidationError as PydanticError
    from scim2_models import Error, SCIMException

    if isinstance(exc, ScimError):
        return exc
    if isinstance(exc, SCIMException):
        return ScimError(exc.status, exc.detail, exc.scim_type or None)
    if isinstance(exc, PydanticError):
        first = Error.from_validation_errors(exc)[0]
        return ScimError(
            int(first.status or 400), first.detail or "invalid request", first.scim_type
        )
    if isinstance(exc, NotFound):
        return ScimError(404, str(exc) or "not found")
    if isinstance(exc, Forbidden):
        return ScimError(403, str(exc) or "forbidden")
    if isinstance(exc, Conflict):
        return ScimError(409, str(exc) or "conflict", "uniqueness")
    if isinstance(exc, InputError):
        return ScimError(400, str(exc) or "invalid value", "invalidValue")
    return None
