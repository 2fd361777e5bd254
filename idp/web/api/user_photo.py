"""``/api/v1/users/{user_id}/photo``: a user's picture (``idp.manage.photos``, the rules of the
account page and the console's "new user" form).

PUT takes the picture as the body (``image/jpeg`` or ``image/png``, at most 2 MB, at least
200×200 px); it is re-encoded (metadata dropped) to a 256 px square PNG. A body that is not
such a picture answers 409 naming the rule it breaks (the schema cannot tell an image's size),
nothing changed. GET answers the stored PNG; DELETE takes it away.
"""

from __future__ import annotations

from flask import Response, request
from pydantic import RootModel

from ...manage import photos, users
from .framework import ApiProblem, Call, Reply, operation

MEDIA = ("image/jpeg", "image/png")


class Photo(RootModel[bytes]):
    """A JPEG or PNG picture, at most 2 MB, at least 200×200 pixels."""


@operation(
    "GET",
    "/users/{user_id}/photo",
    tag="users",
    summary="Read a user's picture",
    produces=("image/png",),
    description="`users:accounts:read` over the user: the stored 256 px PNG. 404 when the "
    "user has none.",
)
def read_user_photo(call: Call, user_id: str) -> Reply:
    with call.transaction() as ctx:
        path = photos.path_of(ctx.svc, users.get(ctx, user_id))
    if path is None:
        raise ApiProblem(404, "Not found", "the user has no picture", kind="not-found")
    resp = Response(path.read_bytes(), mimetype="image/png")
    resp.headers["Cache-Control"] = "no-store"
    return Reply(raw=resp)


@operation(
    "PUT",
    "/users/{user_id}/photo",
    tag="users",
    summary="Set a user's picture",
    body=Photo,
    body_media=", ".join(MEDIA),
    status=204,
    errors=(409, 413, 415),
    description="`users:accounts:update` over the user. The body is the picture (JPEG or "
    "PNG, at most 2 MB, at least 200×200 px), stored re-encoded as a 256 px square PNG. 409 "
    "when it is not such a picture (which rule it breaks is in `detail`), nothing changed.",
)
def put_user_photo(call: Call, user_id: str) -> Reply:
    if request.mimetype not in MEDIA:
        raise ApiProblem(
            415,
            "Unsupported media type",
            "Send the picture as image/jpeg or image/png.",
            kind="unsupported-media-type",
        )
    if (request.content_length or 0) > photos.MAX_BYTES:
        raise ApiProblem(
            413, "Content too large", "the picture is larger than 2 MB", kind="too-large"
        )
    data = request.get_data(cache=False)
    try:
        with call.transaction() as ctx:
            photos.set_photo(ctx, users.get(ctx, user_id, "users:accounts:update"), data)
    except photos.PhotoRefused as exc:
        raise ApiProblem(
            409,
            "Unusable picture",
            str(exc),
            kind="unusable-picture",
            extensions={"rule": exc.code},
        ) from None
    return Reply(status=204)


@operation(
    "DELETE",
    "/users/{user_id}/photo",
    tag="users",
    summary="Remove a user's picture",
    status=204,
    description="`users:accounts:update` over the user; 204 also when there was none.",
)
def delete_user_photo(call: Call, user_id: str) -> Reply:
    with call.transaction() as ctx:
        photos.remove_photo(ctx, users.get(ctx, user_id, "users:accounts:update"))
    return Reply(status=204)
