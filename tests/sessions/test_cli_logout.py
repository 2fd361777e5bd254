"""`idp users lock`, `deactivate` and `set-password` end the user's sessions the way the web
app does (issue 19): the CLI registers the same OIDC back-channel and SAML logout listeners and
waits for the deliveries before it exits, so a real back-channel listener on a loopback port
has its verified logout token when the command returns, and the session's refresh token is
refused. Bad input: a non-zero exit, one line, nothing ended."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner
from oidc_support import Env, build_env
from sqlalchemy import select
from test_logout_everywhere_oidc import (
    LOCAL_RPS,
    backchannel_listener,
    refresh,
    signed_in,
    tokens,
    verified_logout,
)

from idp.cli import main
from idp.storage.models import User

NEW_PASSWORD = "An0ther-long-passphrase!"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    with build_env(tmp_path_factory, LOCAL_RPS) as built:
        yield built


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def _entry(argv: tuple[str, ...]) -> None:
    """The `idp` executable: main() turns a failure into one line and an exit code."""
    raise SystemExit(main(list(argv)))


def _idp(env: Env, *args: str, stdin: str | None = None):
    """Run `idp ...` against the env's instance, with [outbound] letting loopback through."""
    return CliRunner().invoke(
        _entry,
        list(args),
        input=stdin,
        env={
            "IDP_INSTANCE_DIR": str(env.svc.settings.instance_dir),
            "IDP_OUTBOUND_ALLOW_HTTP": "true",
            "IDP_OUTBOUND_ALLOW_PRIVATE_ADDRESSES": "true",
        },
    )


def _status(env: Env, status: str | None = None) -> str:
    with env.svc.sessions.begin() as db:
        user = db.scalar(select(User).where(User.username == "alice"))
        if status:
            user.status = status
        return user.status


@pytest.mark.parametrize(
    ("command", "status"),
    [(["users", "lock", "alice"], "locked"), (["users", "deactivate", "alice"], "inactive")],
)
def test_the_command_reaches_the_back_channel_listener_before_it_exits(env, command, status):
    phone = env.client()
    online = tokens(env, phone, "web2")
    with backchannel_listener(env) as received:
        try:
            result = _idp(env, *command)
            assert result.exit_code == 0, result.output
            # Delivered before the command returned: the pool was drained.
            assert received, "the command exited before the back-channel logout was sent"
            claims = verified_logout(env, received, online["sid"])
        finally:
            assert _status(env) == status
            _status(env, "active")
    assert claims["sub"] and "nonce" not in claims
    assert not signed_in(env, phone)
    assert refresh(env, "web2", online["refresh_token"]).json["error"] == "invalid_grant"


def test_an_unknown_user_is_one_line_and_nothing_ends(env):
    phone = env.client()
    tokens(env, phone, "web2")
    result = _idp(env, "users", "lock", "nobody")
    assert result.exit_code != 0
    assert result.output == "idp: no user 'nobody'\n"
    assert signed_in(env, phone) and _status(env) == "active"


def test_set_password_ends_the_sessions_and_tells_the_rp(env):
    phone = env.client()
    online = tokens(env, phone, "web2")
    with backchannel_listener(env) as received:
        weak = _idp(env, "users", "set-password", "alice", stdin="abc\nabc\n")
        assert weak.exit_code != 0 and "password" in weak.output.lower()
        assert signed_in(env, phone) and received == []  # refused: nothing ended
        result = _idp(
            env, "users", "set-password", "alice", stdin=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
        )
        assert result.exit_code == 0, result.output
        assert "sessions ended" in result.output and NEW_PASSWORD not in result.output
        # Last in the module: alice's password is NEW_PASSWORD from here on.
        assert received
        verified_logout(env, received, online["sid"])
    assert not signed_in(env, phone)
