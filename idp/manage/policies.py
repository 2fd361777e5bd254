"""Policy settings kept in the database: the keys of [password_policy], [lockout], [session],
[mfa], [registration] and [branding] named in ``idp.settings.APPLIED_SECTIONS``, set with
``idp config apply``, the admin console or ``PATCH /api/v1/settings``, and laid over the TOML
file (the environment still wins).

Permissions: ``config:policies:read`` / ``config:policies:update``. Every change is checked
with the settings module's own rules first (``idp.settings.with_applied``), audited (old and
new value, secrets redacted), and bumps the settings generation in the same transaction: each
worker of each node compares that generation on its next request (:class:`LiveSettings`) and
reloads, so a change applies without a restart.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence, Set
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..core.iprules import ALLOW, DENY, Rules
from ..errors import ConfigError, ValidationError
from ..settings import Section, applied_keys, load_settings, redact, with_applied
from ..storage import applied_settings
from .context import Context

log = logging.getLogger("idp.settings")

_NAMED = re.compile(r"setting (\w+)\.(\w+)")


class SettingError(ValidationError):
    """A value the settings' rules refuse; ``field`` is its dotted name ("" when unknown)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def bump_generation(ctx: Context) -> None:
    """Every worker of every node reloads its settings on its next request (same transaction)."""
    applied_settings.bump_generation(ctx.db)


def stored(ctx: Context) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} of the stored policy settings."""
    ctx.require("config:policies:read")
    return applied_settings.rows(ctx.db)


def editable() -> dict[str, tuple[str, ...]]:
    """Section -> the keys kept in the database, in the defaults' order."""
    return applied_keys()


def _shown(key: str, value: Any) -> Any:
    shown = redact(key, value)
    return list(shown) if isinstance(shown, tuple) else shown


def store(ctx: Context, section: str, key: str, value: Any) -> None:
    ctx.require("config:policies:update")
    applied_settings.put(ctx.db, section, key, value, ctx.svc.clock.utcnow())
    bump_generation(ctx)
    ctx.audit("config.policy_set", f"{section}.{key}", value=_shown(key, value))


def clear(ctx: Context, section: str, key: str) -> bool:
    """Drop a stored value: the TOML file's (or the default) applies again."""
    ctx.require("config:policies:update")
    dropped = applied_settings.drop(ctx.db, section, key)
    bump_generation(ctx)
    ctx.audit("config.policy_cleared", f"{section}.{key}")
    return dropped


def update(
    ctx: Context, changes: Mapping[str, Mapping[str, Any]], locked: Set[str] = frozenset()
) -> list[str]:
    """Store ``changes`` ({section: {key: value}}) after checking all of them together with
    the settings' rules; the dotted names of the values that changed. ``locked``: dotted names
    an environment variable (or the app's overrides) sets, which a stored value could never
    override: refused. ``[ip_rules]`` that would refuse the acting administrator's own address
    (``ctx.actor.ip``, when they act through the console or the API) are refused too
    (:func:`keep_own_address`). A refusal (SettingError naming the field) stores nothing."""
    ctx.require("config:policies:update")
    allowed = editable()
    for section, values in changes.items():
        for key in values:
            name = f"{section}.{key}"
            if key not in allowed.get(section, ()):
                raise SettingError(f"{name} cannot be changed here", name)
            if name in locked:
                raise SettingError(
                    f"{name} is set by an environment variable, which always wins; change it there",
                    name,
                )
    current = ctx.svc.settings
    try:
        candidate = with_applied(current, changes)
    except ConfigError as exc:
        found = _NAMED.search(str(exc))
        raise SettingError(str(exc), f"{found[1]}.{found[2]}" if found else "") from None
    if "ip_rules" in changes:
        keep_own_address(ctx, candidate.ip_rules.allow, candidate.ip_rules.deny)
    now = ctx.svc.clock.utcnow()
    changed: list[str] = []
    for section, values in changes.items():
        for key in values:
            old, new = current[section][key], candidate[section][key]
            if _plain(old) == _plain(new):
                continue
            applied_settings.put(ctx.db, section, key, _plain(new), now)
            ctx.audit(
                "config.policy_set",
                f"{section}.{key}",
                old=_shown(key, old),
                new=_shown(key, new),
            )
            changed.append(f"{section}.{key}")
    if changed:
        bump_generation(ctx)
    return changed


def keep_own_address(ctx: Context, allow: Sequence[str], deny: Sequence[str]) -> None:
    """SettingError when global rules ``allow`` / ``deny`` would refuse the address the actor
    acts from: an administrator must not lock themselves (or the API client calling) out by
    one change; another administrator, or the operator at the command line (no address),
    can still make it."""
    address = ctx.actor.ip
    if address and not Rules.of(allow, deny).permits(address):
        field = ALLOW if allow and not Rules.of(allow, ()).permits(address) else DENY
        raise SettingError(
            f"these rules would refuse your own address {address}; allow it first",
            f"ip_rules.{field}",
        )


def test_delivery(ctx: Context, channel: str, to: str, send: Callable[[], bool]) -> bool:
    """Send a test mail or SMS (``send`` does it, True when delivered) and audit the try."""
    ctx.require("config:policies:update")
    sent = send()
    ctx.audit(f"config.test_{channel}_sent", to, delivered=sent)
    return sent


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


class LiveSettings:
    """Keeps one app's running settings current with the database: :meth:`check` reads the
    settings generation (one primary-key read) and, when another worker or node changed the
    stored settings, rebuilds the settings from the same layers as at start (defaults, TOML,
    stored values, environment, overrides) and hands them to the running services."""

    def __init__(self, svc: Any, overrides: Mapping[str, Any] | None) -> None:
        self.svc = svc
        self.overrides = dict(overrides or {})
        self.seen = -1
        self.checked = float("-inf")  # time.monotonic() of the last read of the generation

    def locked(self) -> set[str]:
        """Dotted names set by the environment or the app's overrides: not changeable here."""
        from ..settings import environment_keys

        names = environment_keys()
        for key, value in self.overrides.items():
            if isinstance(value, Mapping):
                names.update(f"{key}.{sub}" for sub in value)
            else:
                names.add(key)
        return names

    def start(self) -> None:
        """Note the generation the app's settings were loaded with (at app build)."""
        try:
            with self.svc.sessions() as db:
                self.seen = applied_settings.generation(db)
        except SQLAlchemyError:
            self.seen = -1  # not migrated yet: the first request that can read it reloads

    def check(self, *, force: bool = False) -> bool:
        """Reload when the stored generation moved; True when it did. Reads the generation at
        most once per ``[server] reload_poll_seconds`` unless ``force`` (after a change this
        worker made itself)."""
        now = time.monotonic()
        if not force and now - self.checked < self.svc.settings.server.reload_poll_seconds:
            return False
        self.checked = now
        try:
            with self.svc.sessions() as db:
                current = applied_settings.generation(db)
                if current == self.seen:
                    return False
                applied = applied_settings.rows(db)
        except SQLAlchemyError:
            return False  # the readiness probe reports the database; the page works on
        try:
            fresh = load_settings(self.overrides, applied=applied or None)
        except ConfigError as exc:
            log.error("stored settings not applied, the running ones are kept: %s", exc)
            self.seen = current
            return False
        apply_to_services(self.svc, fresh)
        self.seen = current
        log.info("settings reloaded (generation %s)", current)
        return True


def apply_to_services(svc: Any, fresh: Section) -> None:
    """Hand new settings to the running parts that copied policy values when they were built;
    every other part reads ``svc.settings`` when it needs a value."""
    from ..core.policy import MfaPolicy

    svc.settings = fresh
    svc.mfa_policy = MfaPolicy.from_settings(fresh.mfa)
    svc.sso_sessions.idle = fresh.session.idle_minutes * 60
    svc.sso_sessions.absolute = fresh.session.max_hours * 3600
    svc.mailer.product_name = fresh.branding.product_name
    svc.__dict__.pop("webauthn_rp", None)  # its name follows the product name
    svc.wellknown_cache.clear()
    svc.kept_pages.clear()
