"""``idp serve``: the production WSGI server (granian), several worker processes."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import click

from ..metrics import MULTIPROC_ENV, count_in_directory
from ..settings import load_settings
from .base import CliFailure, require_migrated


def default_workers() -> int:
    return max(2, os.cpu_count() or 1)


def server_threads(settings: Any) -> int:
    """``server.threads``, or for 0 the automatic choice described in config/defaults.toml."""
    if settings.server.threads:
        return settings.server.threads
    remote = settings.ldap.enabled or settings.smtp_url or settings.sms_url
    return 4 if remote else 1


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the server itself binds: connections of a stopped server left in TIME_WAIT do
        # not make the port "in use" (Linux still refuses the bind while anything listens).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CliFailure(f"port {port} on {host} is already in use") from None
            raise CliFailure(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@click.command()
@click.option("--host", default=None, help="Default: server.host (127.0.0.1).")
@click.option("--port", type=int, default=None, help="Default: server.port (5000).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Default: server.workers, or one per CPU core (at least 2).",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the IdP with granian (WSGI), several worker processes."""
    settings = load_settings()
    host = host or settings.server.host
    port = port or settings.server.port
    workers = workers or settings.server.workers or default_workers()
    if not 0 < port < 65536:
        raise CliFailure(f"--port must be 1-65535, not {port}", 2)
    # Checked here, in the process that then becomes granian's main process by exec, which
    # leaves all of this behind.
    _check_start()
    # Each worker counts into files here, and whichever answers /metrics sums them all
    # (chosen before anything is counted, in this process too).
    count_in_directory(
        Path(os.environ.get(MULTIPROC_ENV) or Path(settings.instance_dir) / "metrics")
    )
    _check_port(host, port)
    issuer = settings.issuer
    threads = server_threads(settings)
    click.echo(
        f"IdP listening on http://{host}:{port} ({workers} workers, {threads} "
        f"thread{'s' if threads > 1 else ''} each), issuer {issuer}"
    )
    click.echo(f"  Sign in:   {issuer}/login   (account page: {issuer}/account/)")
    click.echo(f"  Console:   {issuer}/admin/   (administrators)")
    click.echo(f"  Discovery: {issuer}/.well-known/openid-configuration")
    click.echo(f"  JWKS:      {issuer}/jwks")
    click.echo(f"  SAML:      {issuer}/saml/metadata")
    click.echo(f"  Readiness: {issuer}/readyz")
    from ..backends.webauthn import ip_address_issuer

    if ip_address_issuer(settings):
        click.echo(
            "  Note: security keys and passkeys need an issuer with a host name "
            "(browsers refuse an IP address); set IDP_ISSUER, e.g. http://localhost:PORT"
        )
    sys.stdout.flush()
    # The exec'd main process and the workers it forks read warnings settings afresh: the same
    # quiet default for them.
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    options = {
        "host": host,
        "port": port,
        "workers": workers,
        "threads": threads,
        "http": settings.server.http,
    }
    # This process becomes granian's main process (idp.serving): same process id, and none of
    # this command line's imports or the services built above (they would stay in its memory
    # for as long as the server runs).
    argv = [sys.executable, "-m", "idp.serving", json.dumps(options)]
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and module


def _check_start() -> None:
    """Check what a worker needs from this instance before any worker starts, so that a wrong
    setting, an unreachable or unmigrated database, an unreadable key or [geoip] database, or
    tracing without its packages fails in one line instead of as a traceback in every worker.

    The services are built, not the whole app: building the app here as well (every blueprint,
    ~1,300 modules) doubled the time to the first answer, and this process then ``exec``s
    granian, which throws it all away. What the app adds over the services is this
    installation's code, the same in every worker; its modules are found here (not executed)."""
    import importlib.util

    from ..resources import resource_dir
    from ..services import build_services, load_effective_settings
    from ..web.blueprints import BLUEPRINTS

    settings = load_effective_settings()
    svc = build_services(settings)
    svc.geoip  # noqa: B018 - a named [geoip] database that cannot be read stops the start here
    svc.check_database()
    require_migrated(svc)
    svc.keys.ring()
    svc.engine.dispose()
    resource_dir("templates")
    for module in BLUEPRINTS:
        if importlib.util.find_spec(module, "idp") is None:
            raise CliFailure(f"this installation is incomplete: module idp{module} is missing")
    if settings.tracing.enabled:
        from ..tracing import check_installed

        check_installed()
