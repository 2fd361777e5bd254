"""The SCIM 2.0 views (RFC 7644; docs/scim.md): parse the request, authenticate the Bearer
token (scope ``scim``), run one :mod:`idp.scim.service` operation in one management
transaction, render ``application/scim+json``. Every refusal is a SCIM error (RFC 7644 §3.12:
``status`` as a string, ``scimType`` where one applies), built in :func:`error_response`.

Imported on a worker's first SCIM request (the routes are listed in ``idp.web.scim``): with
it come scim2-models and the SCIM resource models (~0.4 s and ~15 MB per worker)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Response, abort, g, request
from scim2_models import Context as ScimContext
from scim2_models import ListResponse, ResponseParameters

from ...errors import new_reference
from ...manage import transaction
from ...oidc.bearer import BearerRefusal, authenticate
from ...scim import discovery, service
from ...scim.errors import ScimError, invalid_value, scim_error
from ...scim.mapping import Urls
from ...scim.models import FullUser, Group
from .. import ratelimit
from ..api.framework import caller_actor
from ..current import svc
from ..oidc.respond import presentation
from .paths import PREFIX

log = logging.getLogger("idp.scim")

SCIM_JSON = "application/scim+json"
_BODY_TYPES = (SCIM_JSON, "application/json")


# --- responses ------------------------------------------------------------------------------------


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    resp = Response(json.dumps(data), status=status, mimetype=SCIM_JSON)
    resp.headers["Cache-Control"] = "no-store"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def error_response(exc: BaseException) -> Response:
    """The one place where an error becomes a response under ``/scim/v2``."""
    err = scim_error(exc)
    if err is None:
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            err = ScimError(exc.code or 500, exc.description or exc.name)
        else:
            ref = new_reference()
            log.exception("scim error", extra={"reference": ref, "request_id": g.get("request_id")})
            err = ScimError(500, f"An unexpected error occurred (reference {ref}).")
    headers = dict(getattr(exc, "headers", None) or {})
    return _json(err.body(), err.status, headers)


class _Unauthorized(ScimError):
    def __init__(self, refusal: BearerRefusal) -> None:
        super().__init__(refusal.status, refusal.description)
        challenge = 'Bearer realm="scim"'
        if refusal.error:
            challenge += f', error="{refusal.error}"'
            if refusal.status == 403:
                challenge += ', scope="scim"'
        if refusal.dpop:  # RFC 9449 §7.1
            challenge = refusal.challenge("scim")
        self.headers = {"WWW-Authenticate": challenge, **refusal.headers}


def _urls() -> Urls:
    return Urls(svc().settings.issuer.rstrip("/") + PREFIX)


def _render(
    resource: Any,
    *,
    status: int = 200,
    params: ResponseParameters | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    ctx = (
        ScimContext.RESOURCE_CREATION_RESPONSE
        if status == 201
        else (ScimContext.RESOURCE_QUERY_RESPONSE)
    )
    data = resource.model_dump(scim_ctx=ctx, response_parameters=params)
    out = dict(headers or {})
    meta = getattr(resource, "meta", None)
    if meta is not None and meta.version:
        out["ETag"] = meta.version
    if status == 201 and meta is not None and meta.location:
        out["Location"] = meta.location
    return _json(data, status, out)


# --- the request ----------------------------------------------------------------------------------


def _actor():
    """The caller (once per request): 401 / 403 before anything else is looked at."""
    if "scim_actor" not in g:
        refused = ratelimit.check("bearer")
        if refused is not None:
            abort(ratelimit.too_many(refused))
        got = authenticate(svc(), request.headers.get("Authorization"), "scim", presentation())
        if isinstance(got, BearerRefusal):
            ratelimit.count_bearer_refusal(got)
            raise _Unauthorized(got)
        g.scim_actor = caller_actor(got)
    return g.scim_actor


def _body() -> Any:
    _actor()
    if request.mimetype not in _BODY_TYPES:
        raise ScimError(415, f"Send the body as {SCIM_JSON} (or application/json).")
    try:
        return json.loads(request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ScimError(400, "The body is not valid JSON.", "invalidSyntax") from None


def _int(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise invalid_value(f"{name}: an integer")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise invalid_value(f"{name}: an integer") from None


def _list_query(src: dict[str, Any]) -> service.ListQuery:
    start = _int("startIndex", src.get("startIndex"))
    count = _int("count", src.get("count"))
    for name in ("filter", "sortBy", "sortOrder"):
        if src.get(name) is not None and not isinstance(src.get(name), str):
            raise invalid_value(f"{name}: a string")
    return service.ListQuery(
        filter=src.get("filter") or None,
        sort_by=src.get("sortBy") or None,
        sort_order=src.get("sortOrder") or None,
        start_index=1 if start is None else start,
        count=count,
    )


def _params(model: Any, src: dict[str, Any]) -> ResponseParameters | None:
    attributes, excluded = src.get("attributes"), src.get("excludedAttributes")
    if not attributes and not excluded:
        return None
    try:
        return ResponseParameters[model].model_validate(
            {"attributes": attributes or None, "excludedAttributes": excluded or None}
        )
    except Exception as exc:  # noqa: BLE001 - an unreadable attribute list is the client's error
        raise invalid_value(f"attributes: {exc}") from None


def _query_args() -> dict[str, Any]:
    return {k: request.args.get(k) for k in request.args}


def _run(fn: Callable[..., Any], *args: Any) -> Any:
    actor = _actor()
    with transaction(svc(), actor) as ctx:
        return fn(ctx, _urls(), *args)


def _list(model: Any, fn: Callable[..., Any], src: dict[str, Any]) -> Response:
    query = _list_query(src)
    params = _params(model, src)
    resources, total, start = _run(fn, query)
    page = ListResponse[model](
        total_results=total,
        start_index=start,
        items_per_page=len(resources),
        resources=resources,
    )
    data = page.model_dump(scim_ctx=ScimContext.SEARCH_RESPONSE, response_parameters=params)
    data.setdefault("Resources", [])
    return _json(data)


def _one(resource: Any, model: Any, *, status: int = 200) -> Response:
    if status == 200 and request.method == "GET":
        tag = resource.meta.version if resource.meta else None
        wanted = request.headers.get("If-None-Match")
        if (
            tag
            and wanted
            and any(
                t.strip().removeprefix("W/") == tag.removeprefix("W/") for t in wanted.split(",")
            )
        ):
            return Response(status=304, headers={"ETag": tag})
    return _render(resource, status=status, params=_params(model, _query_args()))


# --- discovery ------------------------------------------------------------------------------------


def service_provider_config() -> Response:
    _actor()
    return _render(discovery.service_provider_config(_urls().base))


def _discovery_list(items: list[Any]) -> Response:
    data = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(items),
        "startIndex": 1,
        "itemsPerPage": len(items),
        "Resources": [i.model_dump(scim_ctx=ScimContext.RESOURCE_QUERY_RESPONSE) for i in items],
    }
    return _json(data)


def _discovery_one(items: list[Any], key: str) -> Response:
    found = discovery.find(items, key)
    if found is None:
        raise ScimError(404, f"no such resource {key}")
    return _render(found)


def resource_types() -> Response:
    _actor()
    return _discovery_list(discovery.resource_types(_urls().base))


def resource_type(key: str) -> Response:
    _actor()
    return _discovery_one(discovery.resource_types(_urls().base), key)


def schemas() -> Response:
    _actor()
    return _discovery_list(discovery.schemas(_urls().base))


def schema(key: str) -> Response:
    _actor()
    return _discovery_one(discovery.schemas(_urls().base), key)


def search_all() -> Response:
    return _list(FullUser | Group, service.search_all, _search_body())


# --- Users ---------------------------------------------------------------------------------------


def list_users() -> Response:
    return _list(FullUser, service.list_users, _query_args())


def search_users() -> Response:
    return _list(FullUser, service.list_users, _search_body())


def _search_body() -> dict[str, Any]:
    body = _body()
    if not isinstance(body, dict):
        raise ScimError(400, "The body must be a JSON object.", "invalidSyntax")
    schemas = body.get("schemas")
    if schemas != ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]:
        raise ScimError(400, "schemas: the SearchRequest URN", "invalidSyntax")
    out = dict(body)
    for key in ("attributes", "excludedAttributes"):
        if isinstance(out.get(key), list):
            out[key] = ",".join(str(v) for v in out[key])
    return out


def create_user() -> Response:
    body = _body()
    return _one(_run(service.create_user, body), FullUser, status=201)


def get_user(user_id: str) -> Response:
    return _one(_run(service.get_user, user_id), FullUser)


def replace_user(user_id: str) -> Response:
    body = _body()
    return _one(
        _run(service.replace_user, user_id, body, request.headers.get("If-Match")), FullUser
    )


def patch_user(user_id: str) -> Response:
    body = _body()
    return _one(_run(service.patch_user, user_id, body, request.headers.get("If-Match")), FullUser)


def delete_user(user_id: str) -> Response:
    _run(service.delete_user, user_id, request.headers.get("If-Match"))
    return Response(status=204)


# --- Groups --------------------------------------------------------------------------------------


def list_groups() -> Response:
    return _list(Group, service.list_groups, _query_args())


def search_groups() -> Response:
    return _list(Group, service.list_groups, _search_body())


def create_group() -> Response:
    body = _body()
    return _one(_run(service.create_group, body), Group, status=201)


def get_group(group_id: str) -> Response:
    return _one(_run(service.get_group, group_id), Group)


def replace_group(group_id: str) -> Response:
    body = _body()
    return _one(_run(service.replace_group, group_id, body, request.headers.get("If-Match")), Group)


def patch_group(group_id: str) -> Response:
    body = _body()
    return _one(_run(service.patch_group, group_id, body, request.headers.get("If-Match")), Group)


def delete_group(group_id: str) -> Response:
    _run(service.delete_group, group_id, request.headers.get("If-Match"))
    return Response(status=204)
