"""The OpenAPI 3.1 document of ``/api/v1``, built from the declared operations and their pydantic
models: the schemas that validate requests are the schemas the document publishes."""

from __future__ import annotations

from typing import Any

from flask import Response, json
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..current import svc as current_services
from .common import ApiModel
from .framework import OPERATIONS, PREFIX, PROBLEM, Operation, bp

_REF = "#/components/schemas/{model}"

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No content",
    400: "The request is malformed or a field is invalid (the problem names it)",
    401: "No valid access token",
    403: "The token lacks the scope, or the caller the permission",
    404: "No such resource, or not one the caller may see",
    409: "The change conflicts with existing data",
    412: "If-Match names a version that is no longer current",
    413: "The upload is too large",
    415: "The body is not JSON",
}


class Problem(ApiModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None
    reference: str | None = None


def _models() -> list[tuple[type[BaseModel], str]]:
    wanted: list[tuple[type[BaseModel], str]] = [(Problem, "serialization")]
    for op in OPERATIONS:
        if op.response is not None:
            wanted.append((op.response, "serialization"))
        if op.body is not None:
            wanted.append((op.body, "validation"))
        if op.query is not None:
            wanted.append((op.query, "validation"))
    seen: set[tuple[type[BaseModel], str]] = set()
    return [m for m in wanted if not (m in seen or seen.add(m))]


def _parameters(op: Operation, query_schema: dict[str, Any] | None) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in _path_names(op.path):
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    if query_schema:
        required = set(query_schema.get("required", ()))
        for name, schema in query_schema.get("properties", {}).items():
            schema = _absent_not_null(schema)
            item = {"name": name, "in": "query", "required": name in required, "schema": schema}
            if "description" in schema:
                item["description"] = schema["description"]
            if schema.get("type") == "array" or "array" in str(schema.get("anyOf", "")):
                item.update(style="form", explode=True)
            params.append(item)
    if op.etag and op.method in ("PATCH", "PUT", "DELETE"):
        params.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "The ETag read before; a stale one answers 412.",
            }
        )
    return params


def _absent_not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is left out or given as text: it cannot be JSON null, so an optional
    field's ``anyOf [X, null]`` is published as X (and no ``default: null``)."""
    alternatives = schema.get("anyOf")
    if not alternatives:
        return schema
    kept = [alt for alt in alternatives if alt.get("type") != "null"]
    if len(kept) != 1 or len(kept) == len(alternatives):
        return schema
    out = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    out.update(kept[0])
    return out


def _path_names(path: str) -> list[str]:
    import re

    return re.findall(r"\{(\w+)\}", path)


def document() -> dict[str, Any]:
    models = _models()
    refs, top = models_json_schema(models, ref_template=_REF)
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]

    def inline(model: type[BaseModel], mode: str) -> dict[str, Any]:
        target = ref(model, mode)["$ref"].rsplit("/", 1)[1]
        return schemas[target]

    problem_ref = ref(Problem, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        query_schema = inline(op.query, "validation") if op.query else None
        item: dict[str, Any] = {
            "operationId": op.handler.__name__,
            "summary": op.summary,
            "tags": [op.tag],
            "security": [{"bearer": [op.scope]}, {"oauth2": [op.scope]}],
            "parameters": _parameters(op, query_schema),
        }
        if op.description:
            item["description"] = op.description
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {
                    media: {"schema": ref(op.body, "validation")}
                    for media in op.body_media.split(", ")
                },
            }
        responses: dict[str, Any] = {}
        ok: dict[str, Any] = {"description": _STATUS_TEXT.get(op.status, "OK")}
        if op.response is not None:
            ok["content"] = {
                media: {"schema": ref(op.response, "serialization")}
                if media == "application/json"
                else {"schema": {"type": "string", "format": "binary"}}
                for media in op.produces
            }
        elif op.produces != ("application/json",):
            ok["content"] = {
                media: {"schema": {"type": "string", "format": "binary"}} for media in op.produces
            }
        headers: dict[str, Any] = {}
        if op.etag and op.response is not None:
            headers["ETag"] = {"schema": {"type": "string"}}
        if op.status == 201:
            headers["Location"] = {"schema": {"type": "string"}}
        if headers:
            ok["headers"] = headers
        responses[str(op.status)] = ok
        codes = {400, 401, 403, *op.errors}
        if _path_names(op.path):
            codes.add(404)
        if op.etag and op.method in ("PATCH", "PUT", "DELETE"):
            codes.add(412)
        if op.body is not None and op.body_media == "application/json":
            codes.add(415)
        for code in sorted(codes):
            responses[str(code)] = {
                "description": _STATUS_TEXT.get(code, "Error"),
                "content": {PROBLEM: {"schema": problem_ref}},
            }
        item["responses"] = responses
        paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = item
    issuer = current_services().settings.issuer
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "IdP admin API",
            "version": "1",
            "description": "Manage users, groups, roles, the organization, clients and SAML "
            "service providers. Bearer access tokens with scope `admin` from this IdP's token "
            "endpoint; errors are RFC 9457 problem details.",
        },
        "servers": [{"url": issuer}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "oauth2": {
                    "type": "oauth2",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": f"{issuer}/oauth2/token",
                            "scopes": {"admin": "manage the IdP", "scim": "SCIM provisioning"},
                        }
                    },
                },
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """Public, as Keycloak's and authentik's are: it describes the API, it grants nothing."""
    return Response(json.dumps(document()), mimetype="application/json")
