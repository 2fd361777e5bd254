"""SCIM 2.0 at ``/scim/v2`` (RFC 7644; docs/scim.md). The routes are listed here, in one
blueprint named ``scim``; their views (:mod:`idp.web.scim.views`, with scim2-models and the
SCIM resource models) are imported on a worker's first SCIM request, not by every worker at
start: most workers of most deployments never see one."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from .paths import PREFIX

bp = Blueprint("scim", __name__, url_prefix=PREFIX)

# (method, rule, view in idp.web.scim.views): the endpoint is named after the view.
ROUTES = [
    ("GET", "/ServiceProviderConfig", "service_provider_config"),
    ("GET", "/ResourceTypes", "resource_types"),
    ("GET", "/ResourceTypes/<path:key>", "resource_type"),
    ("GET", "/Schemas", "schemas"),
    ("GET", "/Schemas/<path:key>", "schema"),
    ("POST", "/.search", "search_all"),
    ("GET", "/Users", "list_users"),
    ("POST", "/Users/.search", "search_users"),
    ("POST", "/Users", "create_user"),
    ("GET", "/Users/<user_id>", "get_user"),
    ("PUT", "/Users/<user_id>", "replace_user"),
    ("PATCH", "/Users/<user_id>", "patch_user"),
    ("DELETE", "/Users/<user_id>", "delete_user"),
    ("GET", "/Groups", "list_groups"),
    ("POST", "/Groups/.search", "search_groups"),
    ("POST", "/Groups", "create_group"),
    ("GET", "/Groups/<group_id>", "get_group"),
    ("PUT", "/Groups/<group_id>", "replace_group"),
    ("PATCH", "/Groups/<group_id>", "patch_group"),
    ("DELETE", "/Groups/<group_id>", "delete_group"),
]


def _lazy(name: str):
    def view(**kwargs: Any) -> Response:
        from . import views

        return getattr(views, name)(**kwargs)

    view.__name__ = view.__qualname__ = name
    return view


for _method, _rule, _name in ROUTES:
    bp.add_url_rule(_rule, endpoint=_name, view_func=_lazy(_name), methods=[_method])


def error_response(exc: BaseException) -> Response:
    """The one place where an error becomes a response under ``/scim/v2``."""
    from .views import error_response as respond

    return respond(exc)


@bp.errorhandler(Exception)
def _any_error(exc: Exception) -> Response:
    return error_response(exc)
