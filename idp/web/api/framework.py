"""The admin REST API's plumbing: one decorator declares an operation, and that declaration is
both what runs and what the OpenAPI 3.1 document says (``openapi.py``).

    @operation("GET", "/users/{user_id}", tag="users", summary="Read a user",
               response=UserOut, etag=True)
    def read_user(call: Call, user_id: str) -> Reply: ...

The decorator authenticates the Bearer token (scope ``admin``), validates the query string and
the JSON body with their pydantic models (unknown fields refused: no mass assignment), opens
nothing else: the handler calls ``idp.manage`` in ``call.transaction()`` and returns a
:class:`Reply`. Every refusal is RFC 9457 ``application/problem+json`` (``problem``), built
from the typed errors of ``idp.errors`` in one place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, g, request
from pydantic import BaseModel, ValidationError

from ...errors import Conflict, Forbidden, IdPError, NotFound, new_reference
from ...errors import ValidationError as InputError
from ...manage import Actor, Context, transaction
from ...oidc.bearer import BearerCaller, BearerRefusal, authenticate
from .. import ratelimit
from ..current import svc as current_services
from ..oidc.respond import presentation
from ..requestinfo import client_ip, user_agent

log = logging.getLogger("idp.api")

PREFIX = "/api/v1"
PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://idp.invalid/problems/"  # RFC 9457 §3.1.1: a URI that names the kind

bp = Blueprint("api", __name__, url_prefix=PREFIX)


class PreconditionFailed(IdPError):
    """The resource changed since the client read it (a stale ``If-Match``)."""


class ApiProblem(Exception):
    """A refusal of the API layer itself (authentication, content type...)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        kind: str = "",
        headers: dict[str, str] | None = None,
        errors: list[dict[str, str]] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.headers = headers or {}
        self.errors = errors
        # RFC 9457 §3.2 extension members (what a refused deletion is still used by...).
        self.extensions = extensions or {}


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    reference: str | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        **(extensions or {}),
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    if reference:
        body["reference"] = reference
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM)
    resp.headers["Cache-Control"] = "no-store"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


# The typed errors of the service layers and their HTTP meaning.
_ERRORS: list[tuple[type[Exception], int, str, str]] = [
    (NotFound, 404, "Not found", "not-found"),
    (Forbidden, 403, "Forbidden", "forbidden"),
    (Conflict, 409, "Conflict", "conflict"),
    (PreconditionFailed, 412, "Precondition failed", "precondition-failed"),
    (InputError, 400, "Invalid request", "invalid-request"),
]


def problem_for(exc: Exception) -> Response:
    """The one place where an error becomes a response under ``/api/v1``."""
    if isinstance(exc, ApiProblem):
        return problem(
            exc.status,
            exc.title,
            exc.detail,
            kind=exc.kind,
            headers=exc.headers,
            errors=exc.errors,
            extensions=exc.extensions,
        )
    if isinstance(exc, ValidationError):
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(400, "Invalid request", detail, kind="invalid-request", errors=errors)
    for cls, status, title, kind in _ERRORS:
        if isinstance(exc, cls):
            return problem(status, title, str(exc) or title, kind=kind)
    ref = new_reference()
    log.exception("api error", extra={"reference": ref, "request_id": g.get("request_id")})
    return problem(
        500,
        "Internal error",
        "An unexpected error occurred.",
        kind="internal",
        reference=ref,
    )


@bp.errorhandler(Exception)
def _any_error(exc: Exception) -> Response:
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return http_problem(exc.code or 500, exc.name, exc.description or exc.name)
    return problem_for(exc)


def http_problem(status: int, title: str, detail: str) -> Response:
    """Routing errors (404 path, 405 method, 413 size) under the API prefix."""
    return problem(status, title, detail, kind=title.lower().replace(" ", "-"))


# --- authentication ------------------------------------------------------------------------------


def caller_actor(caller: BearerCaller) -> Actor:
    ip, rid, agent = client_ip(), g.get("request_id"), user_agent()
    if caller.user_id is not None:
        return Actor.user(
            caller.user_id, caller.user_uuid or "", ip=ip, request_id=rid, user_agent=agent
        )
    return Actor.service(caller.client_id, ip=ip, request_id=rid, user_agent=agent)


def bearer_actor(scope: str) -> Actor:
    """The caller of this request, or an :class:`ApiProblem` (401/403 with RFC 6750's header)."""
    refused = ratelimit.check("bearer")
    if refused is not None:
        raise ApiProblem(
            429,
            "Too many requests",
            ratelimit.detail(refused),
            kind="too-many-requests",
            headers=ratelimit.headers(refused),
            extensions={"reference": ratelimit.note(refused)},
        )
    got = authenticate(current_services(), request.headers.get("Authorization"), scope,
                       presentation())
    if isinstance(got, BearerRefusal):
        ratelimit.count_bearer_refusal(got)
        title = "Unauthorized" if got.status == 401 else "Forbidden"
        raise ApiProblem(
            got.status,
            title,
            got.description,
            kind="unauthorized" if got.status == 401 else "insufficient-scope",
            headers={"WWW-Authenticate": got.challenge(scope), **got.headers},
        )
    return caller_actor(got)


# --- one call -----------------------------------------------------------------------------------


@dataclass
class Call:
    """What a handler gets: who calls, the validated query and body, the services."""

    actor: Actor
    query: Any = None
    body: Any = None

    @property
    def svc(self):
        return current_services()

    @contextmanager
    def transaction(self) -> Iterator[Context]:
        with transaction(self.svc, self.actor) as ctx:
            yield ctx

    def if_match(self, current: str) -> None:
        """412 when the client sent ``If-Match`` and the resource is no longer that version."""
        check_if_match(request.headers.get("If-Match"), current)


@dataclass
class Reply:
    status: int = 200
    body: BaseModel | dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: Response | None = None


def etag_of(body: BaseModel | dict[str, Any]) -> str:
    """A strong ETag (RFC 9110 §8.8.3) of a representation: it changes whenever any field does."""
    data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return f'"{digest[:32]}"'


def check_if_match(header: str | None, current: str) -> None:
    if header is None:
        return
    tags = [t.strip() for t in header.split(",")]
    if "*" in tags or current in tags:
        return
    raise PreconditionFailed("The resource was changed since you read it; read it again.")


# --- declaring operations ---------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    tag: str
    summary: str
    handler: Callable[..., Reply]
    response: type[BaseModel] | None
    status: int
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    body_media: str
    etag: bool
    description: str
    errors: tuple[int, ...]
    produces: tuple[str, ...]
    scope: str


OPERATIONS: list[Operation] = []

_PATH_PARAM = re.compile(r"\{(\w+)\}")


def _query_values(model: type[BaseModel]) -> dict[str, Any]:
    """The query string as the model's fields want it: a list for list fields, else one value
    (a repeated single parameter is an error, not silently the first)."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        got = request.args.getlist(key)
        if not got:
            continue
        origin = getattr(info.annotation, "__origin__", None)
        if origin is list:
            values[key] = got
        elif len(got) > 1:
            raise ApiProblem(
                400,
                "Invalid request",
                f"{key}: give it once",
                kind="invalid-request",
                errors=[{"field": key, "message": "given more than once"}],
            )
        else:
            values[key] = got[0]
    unknown = sorted(set(request.args) - {f.alias or n for n, f in model.model_fields.items()})
    if unknown:
        raise ApiProblem(
            400,
            "Invalid request",
            f"unknown query parameter {unknown[0]}",
            kind="invalid-request",
            errors=[{"field": u, "message": "unknown query parameter"} for u in unknown],
        )
    return values


def _json_body(model: type[BaseModel]) -> BaseModel:
    mimetype = request.mimetype
    if mimetype not in ("application/json", "application/merge-patch+json"):
        raise ApiProblem(
            415,
            "Unsupported media type",
            "Send the body as application/json.",
            kind="unsupported-media-type",
        )
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(
            400,
            "Invalid request",
            f"The body is not valid JSON: {exc}",
            kind="invalid-json",
            errors=[{"field": "(body)", "message": "not valid JSON"}],
        ) from None
    return model.model_validate(data)


def operation(
    method: str,
    path: str,
    *,
    tag: str,
    summary: str,
    response: type[BaseModel] | None = None,
    status: int = 200,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    body_media: str = "application/json",
    etag: bool = False,
    description: str = "",
    errors: tuple[int, ...] = (),
    produces: tuple[str, ...] = ("application/json",),
    scope: str = "admin",
) -> Callable[[Callable[..., Reply]], Callable[..., Reply]]:
    """Declare an operation on ``/api/v1{path}`` (``{name}`` path parameters).

    ``body_media`` other than JSON (``multipart/form-data``; several as ``"image/jpeg,
    image/png"``) leaves reading the body to the handler; ``body`` then only documents it."""

    def register(fn: Callable[..., Reply]) -> Callable[..., Reply]:
        op = Operation(
            method.upper(),
            path,
            tag,
            summary,
            fn,
            response,
            status,
            query,
            body,
            body_media,
            etag,
            description or (fn.__doc__ or "").strip(),
            errors,
            produces,
            scope,
        )
        OPERATIONS.append(op)

        def view(**params: str) -> Response:
            actor = bearer_actor(op.scope)
            call = Call(actor)
            if op.query is not None:
                call.query = op.query.model_validate(_query_values(op.query))
            elif request.args:
                raise ApiProblem(
                    400,
                    "Invalid request",
                    "this operation takes no query parameters",
                    kind="invalid-request",
                )
            if op.body is not None and op.body_media == "application/json":
                call.body = _json_body(op.body)
            return _respond(op, fn(call, **params))

        flask_path = _PATH_PARAM.sub(r"<\1>", path)
        bp.add_url_rule(flask_path, fn.__name__, view, methods=[op.method])
        return fn

    return register


def _respond(op: Operation, reply: Reply) -> Response:
    if reply.raw is not None:
        resp = reply.raw
    elif reply.body is None:
        resp = Response(status=reply.status)
    else:
        data = (
            reply.body.model_dump(mode="json", by_alias=True)
            if isinstance(reply.body, BaseModel)
            else reply.body
        )
        resp = Response(json.dumps(data), status=reply.status, mimetype="application/json")
        if op.etag and isinstance(reply.body, BaseModel):
            resp.headers["ETag"] = etag_of(reply.body)
    resp.headers.setdefault("Cache-Control", "no-store")
    for k, v in reply.headers.items():
        resp.headers[k] = v
    return resp
