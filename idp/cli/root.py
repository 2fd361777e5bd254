"""The ``idp`` command line. Every command exits 0 on success; on failure it prints one line
to stderr and exits 2 (bad usage or settings) or 1 (anything else). ``--json`` prints exactly
one JSON object on stdout."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import warnings
from datetime import date
from typing import Any

import click
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .errors import ConfigError, IdPError
from .services import Services, build_services
from .settings import load_settings


class CliFailure(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _services() -> Services:
    svc = build_services(load_settings())
    svc.check_database()
    return svc


def _require_migrated(svc: Services) -> None:
    from .storage.migrate import current_revision, head_revision

    if current_revision(svc.engine) != head_revision():
        raise CliFailure(
            "the database is not initialised or not up to date: run `idp init` "
            "(or `idp db upgrade`)"
        )


def _out(as_json: bool, obj: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(obj) if as_json else text)


def _parse_date(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CliFailure(f"{name} must be a date YYYY-MM-DD, not {value!r}", 2) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="idp")
def cli() -> None:
    """A standalone OpenID Connect and SAML 2.0 identity provider."""


# --- init / serve / db -------------------------------------------------------------------------


@cli.command()
@click.option("--admin-username", default="admin", show_default=True)
@click.option("--admin-email", default=None)
@click.option("--admin-password", default=None, help="Generated and printed when omitted.")
@click.option("--demo", is_flag=True, help="Also seed a demo user, groups, roles and a client.")
@click.option("--json", "as_json", is_flag=True)
def init(
    admin_username: str,
    admin_email: str | None,
    admin_password: str | None,
    demo: bool,
    as_json: bool,
) -> None:
    """Migrate the database, create signing keys, role templates and the administrator.
    Safe to run again: it only adds what is missing."""
    from .storage.migrate import upgrade
    from .storage.seed import ensure_admin, seed_demo, seed_role_templates

    svc = build_services(load_settings())
    svc.check_database()
    upgrade(svc.engine)
    new_keys = svc.keys.ensure()
    hasher = _password_hasher()
    with svc.sessions.begin() as db:
        templates = seed_role_templates(db)
        created, generated = ensure_admin(db, hasher, admin_username, admin_email, admin_password)
        demo_out = (
            seed_demo(db, svc, hasher, svc.settings.demo.user_password or None) if demo else None
        )
        if demo:
            from .saml.demo import seed_demo_sp

            demo_sp = seed_demo_sp(db, svc)
            if demo_sp:
                demo_out["saml_sp"] = demo_sp
    result = {
        "issuer": svc.settings.issuer,
        "database": _safe_db(svc),
        "keys_created": new_keys,
        "role_templates_created": templates,
        "admin": {"username": admin_username, "created": created},
    }
    if generated:
        result["admin"]["password"] = generated
    if demo_out is not None:
        result["demo"] = demo_out
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"Initialised the IdP at {svc.settings.issuer} ({result['database']}).")
    if new_keys:
        click.echo(f"Created {len(new_keys)} signing keys.")
    if created:
        pw = generated or "(the password you gave)"
        click.echo(f"Administrator: {admin_username} / {pw}")
        if generated:
            click.echo("  This password is shown once: keep it, then change it.")
    else:
        click.echo(f"Administrator {admin_username!r} already exists (password unchanged).")
    if demo_out:
        if "user" in demo_out:
            u = demo_out["user"]
            click.echo(f"Demo user: {u['username']} / {u['password']}")
        if "client" in demo_out:
            c = demo_out["client"]
            click.echo(
                f"Demo OIDC client: {c['client_id']} / {c['client_secret']} "
                f"(redirect {c['redirect_uri']})"
            )
        if "saml_sp" in demo_out:
            click.echo(f"Demo SAML SP: {demo_out['saml_sp']['entity_id']}")
    elif demo:
        click.echo("Demo realm already present.")


def _safe_db(svc: Services) -> str:
    from .settings import redact_url

    return redact_url(svc.settings.database_url)


def _password_hasher():
    from .backends.passwords import PasswordHasher

    return PasswordHasher()


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


@cli.command()
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
    # Build the whole app once here, as each worker will: a broken install, a missing module
    # or template, an unreachable database or an unreadable key then fails in one line before
    # any worker starts, instead of as a traceback in every worker.
    from .app import create_app

    svc = create_app().extensions["idp"]
    svc.check_database()
    _require_migrated(svc)
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
    click.echo(f"  Discovery: {issuer}/.well-known/openid-configuration")
    click.echo(f"  JWKS:      {issuer}/jwks")
    click.echo(f"  SAML:      {issuer}/saml/metadata")
    click.echo(f"  Readiness: {issuer}/readyz")
    from .backends.webauthn import ip_address_issuer

    if ip_address_issuer(settings):
        click.echo("  Note: security keys and passkeys need an issuer with a host name "
                   "(browsers refuse an IP address); set IDP_ISSUER, e.g. http://localhost:PORT")
    sys.stdout.flush()
    # Worker processes start fresh interpreters: the same quiet default for them.
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    Granian(
        target="idp.app:create_app",
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


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from .storage.migrate import current_revision, upgrade

    svc = _services()
    upgrade(svc.engine)
    click.echo(f"database at revision {current_revision(svc.engine)}")


# --- keys --------------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Signing keys."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
def keys_list(as_json: bool) -> None:
    svc = _services()
    _require_migrated(svc)
    rows = svc.keys.list()
    if as_json:
        click.echo(json.dumps({"keys": rows}))
        return
    for r in rows:
        click.echo(
            f"{r['kid']}  {r['kty']:3}  {r['alg']:6}  {r['status']:8}  "
            f"created {r['created_at']}" + (f"  retires {r['retire_at']}" if r["retire_at"] else "")
        )


@keys.command("rotate")
@click.option(
    "--prepare", is_flag=True, help="Only publish the next keys (no signing change); rotate later."
)
@click.option("--json", "as_json", is_flag=True)
def keys_rotate(prepare: bool, as_json: bool) -> None:
    """The next key (made now unless prepared) starts signing; the old one keeps verifying
    for keys.rotation_overlap_days."""
    svc = _services()
    _require_migrated(svc)
    changes = svc.keys.rotate(prepare=prepare)
    _out(
        as_json,
        {"changes": changes},
        "\n".join(" ".join(f"{k}={v}" for k, v in c.items()) for c in changes),
    )


# --- users, groups, roles ----------------------------------------------------------------------


@cli.group()
def users() -> None:
    """Users."""


@users.command("create")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option("--password", default=None, help="Omit to let the user set one by e-mail.")
@click.option("--given-name", default=None)
@click.option("--family-name", default=None)
@click.option("--group", "groups", multiple=True)
@click.option("--role", "roles", multiple=True)
@click.option("--start-date", default=None)
@click.option("--end-date", default=None)
@click.option("--require-mfa", is_flag=True)
@click.option("--must-change-password", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def users_create(
    username,
    email,
    password,
    given_name,
    family_name,
    groups,
    roles,
    start_date,
    end_date,
    require_mfa,
    must_change_password,
    as_json,
) -> None:
    from .storage.directory import Directory, NewUser

    new = NewUser(
        username=username,
        email=email,
        given_name=given_name,
        family_name=family_name,
        start_date=_parse_date(start_date, "--start-date"),
        end_date=_parse_date(end_date, "--end-date"),
        require_mfa=require_mfa,
        must_change_password=must_change_password,
    )
    svc = _services()
    _require_migrated(svc)
    if password:
        new.password_hash = _password_hasher().hash(password)
    with svc.sessions.begin() as session:
        user = Directory(session).create_user(new, list(groups), list(roles))
        result = {"id": user.uuid, "username": user.username}
    _out(as_json, result, f"created user {result['username']} ({result['id']})")


@cli.group()
def groups() -> None:
    """Groups."""


@groups.command("create")
@click.argument("name")
@click.option("--parent", default=None, help="Path of the parent group, e.g. staff/it.")
@click.option("--description", default=None)
@click.option("--json", "as_json", is_flag=True)
def groups_create(name, parent, description, as_json) -> None:
    from .storage.directory import Directory

    svc = _services()
    _require_migrated(svc)
    with svc.sessions.begin() as session:
        group = Directory(session).create_group(name, parent, description)
        result = {"id": group.id, "name": group.name, "path": group.path}
    _out(as_json, result, f"created group {result['path']}")


@cli.group()
def roles() -> None:
    """Roles."""


@roles.command("create")
@click.argument("name")
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    help="module:feature:action, '*' allowed; repeatable.",
)
@click.option("--description", default=None)
@click.option("--json", "as_json", is_flag=True)
def roles_create(name, permissions, description, as_json) -> None:
    from .storage.directory import Directory

    svc = _services()
    _require_migrated(svc)
    with svc.sessions.begin() as session:
        role = Directory(session).create_role(name, list(permissions), description=description)
        result = {"id": role.id, "name": role.name, "permissions": sorted(permissions)}
    _out(as_json, result, f"created role {result['name']}")


# --- clients -----------------------------------------------------------------------------------


@cli.group()
def clients() -> None:
    """OAuth 2.0 / OpenID Connect clients."""


@clients.command("create")
@click.option("--client-id", required=True)
@click.option("--name", default=None)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    type=click.Choice(["authorization_code", "refresh_token", "client_credentials"]),
)
@click.option(
    "--auth-method",
    default="client_secret_basic",
    show_default=True,
    type=click.Choice(
        [
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "none",
        ]
    ),
)
@click.option("--scope", default="openid profile email", show_default=True)
@click.option("--post-logout-redirect-uri", "post_logout", multiple=True)
@click.option("--backchannel-logout-uri", default=None)
@click.option("--frontchannel-logout-uri", default=None)
@click.option("--jwks-uri", default=None)
@click.option(
    "--resource",
    "resources",
    multiple=True,
    help="A resource server (RFC 8707) the client may ask tokens for (repeat for several).",
)
@click.option("--role", "roles", multiple=True, help="Roles of the client's service account.")
@click.option("--first-party", is_flag=True, help="Skip the consent screen for this client.")
@click.option("--json", "as_json", is_flag=True)
def clients_create(
    client_id,
    name,
    redirect_uris,
    grant_types,
    auth_method,
    scope,
    post_logout,
    backchannel_logout_uri,
    frontchannel_logout_uri,
    jwks_uri,
    resources,
    roles,
    first_party,
    as_json,
) -> None:
    from .core.client_metadata import Policy
    from .storage.clients import ClientRegistry

    svc = _services()
    _require_migrated(svc)
    policy = Policy.from_settings(svc.settings)
    with svc.sessions.begin() as session:
        client, secret = ClientRegistry(session, svc.hasher, svc.sealer, policy).create(
            client_id,
            name=name,
            redirect_uris=list(redirect_uris),
            grant_types=list(grant_types),
            auth_method=auth_method,
            scope=scope,
            post_logout_redirect_uris=list(post_logout),
            backchannel_logout_uri=backchannel_logout_uri,
            frontchannel_logout_uri=frontchannel_logout_uri,
            jwks_uri=jwks_uri,
            roles=list(roles),
            first_party=first_party,
            extra={"resources": list(resources)} if resources else None,
        )
        result: dict[str, Any] = {"client_id": client.client_id}
    if secret:
        result["client_secret"] = secret
    _out(
        as_json,
        result,
        f"created client {client_id}"
        + (f"\nclient secret (shown once): {secret}" if secret else ""),
    )


@clients.command("initial-access-token")
@click.option("--expires-in", type=int, default=86400, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def clients_iat(expires_in: int, as_json: bool) -> None:
    """A one-use token for RFC 7591 dynamic client registration."""
    from .storage.clients import ClientRegistry

    svc = _services()
    _require_migrated(svc)
    with svc.sessions.begin() as session:
        token = ClientRegistry(session, svc.hasher, svc.sealer).new_initial_access_token(
            svc.clock.utcnow(), expires_in
        )
    _out(as_json, {"token": token}, token)


# --- entry point -------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    # Libraries' deprecation warnings are for developers (who pass -W / PYTHONWARNINGS), not for
    # operators: every command promises one line on stderr when it fails.
    if not sys.warnoptions:
        warnings.simplefilter("ignore")
    try:
        cli.main(args=argv, prog_name="idp", standalone_mode=False)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("idp: aborted", err=True)
        return 1
    except click.UsageError as exc:
        click.echo(f"idp: {_one_line(exc.format_message())}", err=True)
        return 2
    except ConfigError as exc:
        click.echo(f"idp: configuration error: {_one_line(exc)}", err=True)
        return 2
    except CliFailure as exc:
        click.echo(f"idp: {_one_line(exc)}", err=True)
        return exc.code
    except IdPError as exc:
        click.echo(f"idp: {_one_line(exc)}", err=True)
        return 1
    except IntegrityError as exc:
        click.echo(f"idp: refused by the database: {_one_line(exc.orig)}", err=True)
        return 1
    except SQLAlchemyError as exc:
        reason = _one_line(getattr(exc, "orig", None) or exc).split(" [SQL")[0]
        click.echo(f"idp: database error: {reason}", err=True)
        return 1
    except OSError as exc:
        click.echo(
            f"idp: {exc.strerror or exc}"
            + (f": {exc.filename}" if getattr(exc, "filename", None) else ""),
            err=True,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: one line, never a traceback
        click.echo(f"idp: unexpected {type(exc).__name__}: {_one_line(exc)}", err=True)
        return 1


from .cli_ldap import ldap as ldap_commands  # noqa: E402

cli.add_command(ldap_commands)

from .cli_identity import register as register_identity  # noqa: E402

register_identity(cli, users, groups, roles)

from .cli_saml import saml as saml_commands  # noqa: E402

cli.add_command(saml_commands)

from .cli_oidc import register as register_oidc  # noqa: E402

register_oidc(clients)

from .cli_mfa import register as register_mfa  # noqa: E402

register_mfa(users)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
