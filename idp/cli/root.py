"""The ``idp`` command group and its entry point: every command group is added here, and
``main`` turns every failure into one line on stderr and an exit code."""

from __future__ import annotations

import importlib
import sys
import warnings

import click
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..errors import ConfigError, IdPError
from .base import CliFailure, one_line

# Each command group, by name: (its module in idp.cli, the click object there). Imported when it
# runs or when help lists it, not with ``idp``: ``idp serve`` imports none of the others, and
# their imports (the management layer and what it drives) were a third of its start.
COMMANDS = {
    "audit": ("audit", "audit"),
    "claims": ("claims", "claims"),
    "clients": ("clients", "clients"),
    "config": ("config", "config"),
    "db": ("db", "db"),
    "gdpr": ("gdpr", "gdpr"),
    "groups": ("groups", "groups"),
    "init": ("init", "init"),
    "ip-rules": ("iprules", "ip_rules"),
    "keys": ("keys", "keys"),
    "ldap": ("ldap", "ldap"),
    "notifications": ("notifications", "notifications"),
    "org": ("org", "org"),
    "provisioning": ("provisioning", "provisioning"),
    "roles": ("roles", "roles"),
    "saml": ("saml", "saml"),
    "serve": ("serve", "serve"),
    "upstreams": ("upstreams", "upstreams_group"),
    "users": ("users", "users"),
}


def _users_group() -> click.Group:
    """``idp users`` with the commands other modules add to it (erase, mfa, import, export)."""
    from .gdpr import users_erase
    from .mfa import mfa
    from .users import users
    from .users_bulk import users_export, users_import

    for command in (users_erase, mfa, users_import, users_export):
        users.add_command(command)
    return users


class _Commands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        if name not in self.commands:
            if name == "users":
                command = _users_group()
            else:
                module, attr = COMMANDS[name]
                command = getattr(importlib.import_module(f".{module}", __package__), attr)
            self.add_command(command, name)
        return self.commands[name]


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="idp")
def cli() -> None:
    """A standalone OpenID Connect and SAML 2.0 identity provider."""


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
