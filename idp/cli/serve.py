"""``idp serve``: the production WSGI server (granian), several worker processes."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
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


def worker_app() -> Any:
    """The app of one server worker: its mail thread keeps running, so mail queued by another
    worker, or before a restart, goes out without waiting for a page to queue more."""
    from ..app import create_app

    app = create_app()
    app.extensions["idp"].mail_queue.start()
    return app


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
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces

    settings = load_settings()
    host = host or settings.server.host
    port = port or settings.server.port
    workers = workers or settings.server.workers or default_workers()
    if not 0 < port < 65536:
        raise CliFailure(f"--port must be 1-65535, not {port}", 2)
    # Each worker counts into files here, and whichever answers /metrics sums them all
    # (chosen before anything is counted, in this process too).
    count_in_directory(
        Path(os.environ.get(MULTIPROC_ENV) or Path(settings.instance_dir) / "metrics")
    )
    # Build the whole app once here, as each worker will: a broken install, a missing module
    # or template, an unreachable database or an unreadable key then fails in one line before
    # any worker starts, instead of as a traceback in every worker.
    from ..app import create_app

    svc = create_app().extensions["idp"]
    svc.check_database()
    require_migrated(svc)
    svc.keys.ring()
    svc.engine.dispose()
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
        click.echo("  Note: security keys and passkeys need an issuer with a host name "
                   "(browsers refuse an IP address); set IDP_ISSUER, e.g. http://localhost:PORT")
    sys.stdout.flush()
    # Worker processes start fresh interpreters: the same quiet default for them.
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    pusher = _start_pusher() if settings.provisioning.serve_drain else None
    try:
        Granian(
            target="idp.cli.serve:worker_app",
            factory=True,
            interface=Interfaces.WSGI,
            address=host,
            port=port,
            workers=workers,
            blocking_threads=threads,
            http=HTTPModes.http1 if settings.server.http == "1" else HTTPModes.auto,
            log_access=False,
            respawn_failed_workers=True,
        ).serve()
    finally:
        if pusher is not None:
            pusher.terminate()
            pusher.wait(10)


def _start_pusher() -> subprocess.Popen:
    """The node's provisioning pusher (``idp provisioning run``), a process of its own beside
    the workers (no thread of a process the workers are forked from): it ends with this one,
    and notices when this one is killed."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and command
        [sys.executable, "-m", "idp.cli", "provisioning", "run", "--parent-pid", str(os.getpid())]
    )
