"""The ``idp`` command group and its entry point: every command group is added here, and
``main`` turns every failure into one line on stderr and an exit code."""

from __future__ import annotations

import sys
import warnings

import click
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..errors import ConfigError, IdPError
from .audit import audit
from .base import CliFailure, one_line
from .claims import claims
from .clients import clients
from .config import config
from .db import db
from .gdpr import gdpr, users_erase
from .groups import groups
from .init import init
from .iprules import ip_rules
from .keys import keys
from .ldap import ldap
from .mfa import mfa
from .notifications import notifications
from .org import org
from .provisioning import provisioning
from .roles import roles
from .saml import saml
from .serve import serve
from .users import users
from .users_bulk import users_export, users_import


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="idp")
def cli() -> None:
    """A standalone OpenID Connect and SAML 2.0 identity provider."""


for command in (init, serve, db, keys, users, groups, roles, org, claims, clients, saml, ldap):
    cli.add_command(command)
cli.add_command(config)
cli.add_command(gdpr)
users.add_command(users_erase)
cli.add_command(audit)
cli.add_command(notifications)
cli.add_command(ip_rules)
cli.add_command(provisioning)
users.add_command(mfa)
users.add_command(users_import)
users.add_command(users_export)


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
        click.echo(f"idp: {one_line(exc.format_message())}", err=True)
        return 2
    except ConfigError as exc:
        click.echo(f"idp: configuration error: {one_line(exc)}", err=True)
        return 2
    except CliFailure as exc:
        click.echo(f"idp: {one_line(exc)}", err=True)
        return exc.code
    except IdPError as exc:
        click.echo(f"idp: {one_line(exc)}", err=True)
        return 1
    except IntegrityError as exc:
        click.echo(f"idp: refused by the database: {one_line(exc.orig)}", err=True)
        return 1
    except SQLAlchemyError as exc:
        reason = one_line(getattr(exc, "orig", None) or exc).split(" [SQL")[0]
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
        click.echo(f"idp: unexpected {type(exc).__name__}: {one_line(exc)}", err=True)
        return 1
