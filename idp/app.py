"""The application factory: settings -> services -> blueprints -> error handlers."""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from flask import Flask, g, jsonify, make_response, render_template, request
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import exc as sa_exc
from werkzeug import exceptions as http_errors
from werkzeug.exceptions import HTTPException

from . import errors, logs, metrics
from .backends.backup_codes import BackupCodeFactor
from .backends.otp_delivery import register_code_factors
from .backends.totp import TotpFactor
from .clock import Clock
from .core.iprules import parse_networks
from .core.steps import register_factor
from .errors import new_reference
from .resources import resource_dir
from .services import Services, build_services, load_effective_settings
from .web import live_settings, mailing, netguard
from .web.api.framework import PREFIX as API_PREFIX
from .web.api.framework import http_problem, problem_for
from .web.assets import asset_url
from .web.blueprints import BLUEPRINTS
from .web.csp import SECURITY_HEADERS, content_security_policy, csp_nonce
from .web.mfa import deliver_code
from .web.proxies import TrustedProxies
from .web.ratelimit import mfa_send_refused
from .web.scim import PREFIX as SCIM_PREFIX
from .web.scim import error_response as scim_error_response
from .web.sso import BrowserSessions
from .web.ui import frame_context
from .web.webauthn import WebAuthnFactor
from .web.wellknown import DocumentsFastPath

log = logging.getLogger("idp.app")

# Paths whose clients are programs: errors there are JSON, never an HTML page.
_JSON_PREFIXES = ("/api/", "/scim/", "/oauth2/", "/.well-known/", "/jwks", "/healthz", "/readyz")


class _CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie session (the CSRF token lives there), with its serializer built
    once per secret key instead of on every request, also those that never touch the
    session (a SAML sign-in)."""

    _built: tuple[Any, Any] | None = None

    def get_signing_serializer(self, app: Flask):
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        built = self._built
        if built is None or built[0] != keys:
            built = self._built = (keys, super().get_signing_serializer(app))
        return built[1]


def services() -> Services:
    from flask import current_app

    return current_app.extensions["idp"]


def create_app(overrides: dict[str, Any] | None = None, *, clock: Clock | None = None) -> Flask:
    settings = load_effective_settings(overrides)
    logs.configure(settings.logging.level, settings.logging.format)
    # The hub's session manager is the one bound to Flask requests, so every caller (web pages
    # and protocol engines alike) shares it and its per-request record cache.
    svc = build_services(settings, clock, session_manager=BrowserSessions)
    svc.geoip  # noqa: B018 - a named [geoip] database that cannot be read stops the start here
    # The built-in second factors, in the chooser's order. The e-mail/SMS codes go out through
    # the web layer's mail templates and SMS sender.
    register_factor(svc, BackupCodeFactor())
    register_factor(svc, TotpFactor())
    register_code_factors(svc, deliver_code, mfa_send_refused)
    register_factor(svc, WebAuthnFactor())

    app = Flask("idp", template_folder=str(resource_dir("templates")))
    app.config.update(
        SECRET_KEY=svc.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.issuer.startswith("https://"),
        MAX_CONTENT_LENGTH=8 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.extensions["idp"] = svc
    app.session_interface = _CookieSessions()
    # Always installed: with no trusted proxy it still drops forged X-Forwarded-* headers.
    app.wsgi_app = TrustedProxies(
        app.wsgi_app,
        settings.server.trusted_proxies,
        parse_networks(settings.server.trusted_proxy_networks),
        settings.mtls.client_cert_header,
    )

    _install_request_hooks(app, settings.logging.access_log)
    mailing.install(app)
    if settings.tracing.enabled:
        from .tracing import install as install_tracing

        install_tracing(app, svc.engine, settings.tracing)
    live_settings.install(app, svc, overrides)
    netguard.install(app)  # after the live settings: the global rules are among them
    _install_error_handlers(app)

    for module in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(module, __package__).bp)
    if not settings.tracing.enabled:  # traced requests go through Flask's instrumentation
        app.wsgi_app = DocumentsFastPath(app, app.wsgi_app, settings.logging.access_log)

    # Globals, not context: macros imported without context ({% from ... import %}) use them.
    app.jinja_env.globals.update(asset=asset_url, script_nonce=csp_nonce)

    @app.context_processor
    def _branding():
        branding = svc.settings.branding  # the current one: settings reload without a restart
        return {
            "branding": branding,
            "request_id": getattr(g, "request_id", None),
            "csp_nonce": csp_nonce(),
            **frame_context(branding),
        }

    return app


def _install_request_hooks(app: Flask, access_log: bool) -> None:
    @app.before_request
    def _start():
        g.request_id = logs.request_id(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        for name, value in SECURITY_HEADERS:
            response.headers.setdefault(name, value)
        # Nothing is kept by a browser or a shared cache unless the route says it may be (assets,
        # discovery, the JWKS, metadata): pages show names, addresses, sessions and audit rows,
        # and the back button of a shared computer must not bring them back after sign-out.
        response.headers.setdefault("Cache-Control", "no-store")
        # Set, not defaulted: one policy for every page, built in one place.
        response.headers["Content-Security-Policy"] = content_security_policy(csp_nonce())
        took = time.perf_counter() - g.get("started", time.perf_counter())
        rule = request.url_rule
        metrics.observe_request(
            rule.rule if rule is not None else None, request.method, response.status_code, took
        )
        if access_log:
            logs.access_line(
                request.method, request.path, response.status_code, took * 1000, g.get("request_id")
            )
        return response


def _wants_json() -> bool:
    if request.path.startswith(_JSON_PREFIXES):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if request.path.startswith(API_PREFIX + "/") or request.path == API_PREFIX:
            return http_problem(exc.code or 500, exc.name, exc.description or exc.name)
        if request.path.startswith(SCIM_PREFIX + "/") or request.path == SCIM_PREFIX:
            return scim_error_response(exc)
        ref = new_reference()
        log.info(
            "http error %s on %s",
            exc.code,
            request.path,
            extra={"reference": ref, "request_id": g.get("request_id")},
        )
        if _wants_json():
            return jsonify(
                error=_slug(exc.code), error_description=exc.description, reference=ref
            ), exc.code
        return render_template(
            "error.html", code=exc.code, title=exc.name, message=exc.description, reference=ref
        ), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        backend = _outage(exc)
        if backend is not None:
            # Refused, never let through: whatever the request needed (a lockout counter, a
            # replay cache, the database) could not be checked. One line, no trace: the log
            # fills fast during an outage, and the cause is the backend, not this code.
            metrics.backend_error(backend)
            log.error(
                "%s unavailable on %s: %s",
                backend,
                request.path,
                type(exc).__name__,
                extra={"request_id": g.get("request_id")},
            )
            resp = make_response(_http(http_errors.ServiceUnavailable(OUTAGE_MESSAGE)))
            resp.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER)
            return resp
        if request.path.startswith(API_PREFIX + "/"):
            return problem_for(exc)
        if request.path.startswith(SCIM_PREFIX + "/"):
            return scim_error_response(exc)
        # A management operation refused on a page (the console): the 403 / 404 page, no trace.
        if isinstance(exc, errors.Forbidden):
            return _http(http_errors.Forbidden())
        if isinstance(exc, errors.NotFound):
            return _http(http_errors.NotFound())
        _count_backend_error(exc)
        ref = new_reference()
        log.exception(
            "unhandled error", extra={"reference": ref, "request_id": g.get("request_id")}
        )
        if _wants_json():
            return jsonify(
                error="server_error",
                error_description="An unexpected error occurred.",
                reference=ref,
            ), 500
        return render_template(
            "error.html",
            code=500,
            title="Something went wrong",
            message="An unexpected error occurred. Please try again later.",
            reference=ref,
        ), 500


OUTAGE_MESSAGE = "The service is temporarily unavailable. Please try again in a moment."
OUTAGE_RETRY_AFTER = 5


def _outage(exc: Exception) -> str | None:
    """The backend ("database" or "store") that ``exc`` says cannot be reached (connection
    refused or lost, a timeout, SQLite busy); None for any other error."""
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return "database"
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return "database"
    module = type(exc).__module__
    if module.startswith(("psycopg", "sqlite3")) and type(exc).__name__ in (
        "OperationalError",
        "InterfaceError",
    ):
        return "database"  # the embedded store speaks DBAPI directly
    if module.startswith("redis."):
        from redis.exceptions import ConnectionError as RedisDown
        from redis.exceptions import TimeoutError as RedisSlow

        if isinstance(exc, RedisDown | RedisSlow):
            return "store"
    return None


def _count_backend_error(exc: Exception) -> None:
    """An unexpected error that came from the database or the store is counted as theirs."""
    module = type(exc).__module__
    if module.startswith(("sqlalchemy.", "psycopg", "sqlite3")):
        metrics.backend_error("database")
    elif module.startswith("redis."):
        metrics.backend_error("store")


def _slug(code: int | None) -> str:
    return {
        400: "invalid_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "request_too_large",
        429: "too_many_requests",
        503: "temporarily_unavailable",
    }.get(code or 500, "server_error")
