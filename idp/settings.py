"""Settings: ``config/defaults.toml`` <- ``$IDP_CONFIG`` <- applied policies <- ``IDP_*`` env
<- overrides.

The defaults file is the schema: every key it has is a setting, its value's type is the
setting's type, and anything else is refused. The result is validated once and frozen.
This is the only module that reads the environment for settings. The "applied policies"
layer holds the policy settings (``APPLIED_SECTIONS``) set with ``idp config apply``; they are
kept in the database and passed in by the caller (``idp.services.load_effective_settings``).
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .core.iprules import InvalidNetwork, canonical
from .errors import ConfigError
from .resources import resource_dir

# Environment variables that start with IDP_ but are not settings: IDP_CLIENT_* name client
# secrets that configuration files refer to (``client_secret: ${env:IDP_CLIENT_WEB_SECRET}``).
_NOT_SETTINGS = re.compile(r"^IDP_(CONFIG|TEST_.*|CLIENT_.*)$")
_SECRET_NAMES = re.compile(r"(secret|password|encryption_key)", re.I)
_URL_KEYS = {"database_url", "redis_url", "smtp_url", "sms_url"}
# Block ciphers for encrypted SAML assertions (saml.encryption_algorithm and per SP).
SAML_ENCRYPTION_ALGORITHMS = ("aes128-gcm", "aes256-gcm", "aes128-cbc", "aes256-cbc")
# The policy settings ``idp config apply`` may set (stored in the database, laid over the TOML
# file, under the environment): None = every key of the section. The [mfa] SMS gateway keys
# are delivery configuration (one of them a password), not policy.
APPLIED_SECTIONS: dict[str, tuple[str, ...] | None] = {
    "password_policy": None,
    "lockout": None,
    "mfa": (
        "required",
        "grace_days",
        "allowed_methods",
        "policies",
        "enroll_at_login",
        "totp_issuer",
        "totp_digits",
        "totp_period",
        "backup_codes",
        "code_ttl_seconds",
        "max_sends",
        "send_window_seconds",
        "remember_days",
        "reauth_minutes",
    ),
    "session": None,
    "registration": None,
    "branding": None,
    "ip_rules": None,
    "risk": None,
    "gdpr": None,
    "devices": None,
    "notifications": None,
    "rate_limits": None,
}
# Security mails a user may be allowed to turn off ([notifications] user_may_disable).
NOTIFICATION_KINDS = ("new_device", "password_expiry", "mfa_changes")
APPLIED_ORIGIN = "the applied configuration (idp config apply)"


def applied_keys(defaults: Mapping[str, Any] | None = None) -> dict[str, tuple[str, ...]]:
    """Section -> the keys of it that ``idp config apply`` may set, in the defaults' order."""
    defaults = load_defaults() if defaults is None else defaults
    return {
        section: tuple(keys) if keys is not None else tuple(defaults[section])
        for section, keys in APPLIED_SECTIONS.items()
    }


def _load_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None


def load_defaults() -> dict[str, Any]:
    return _load_toml(resource_dir("config") / "defaults.toml", "defaults file")


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
    }.get(type(value), type(value).__name__)


def _coerce(name: str, default: Any, value: Any, from_text: bool = False) -> Any:
    """Give ``value`` the type of ``default``; raise ConfigError naming the setting.
    Only environment variables (``from_text``) are parsed from strings: TOML has real types,
    so ``port = "80"`` in a file is a mistake worth reporting."""
    kind = type(default)
    if from_text and isinstance(value, str) and kind is not str:
        value = _parse_env_text(name, kind, value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"setting {name} must be true or false, not {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"setting {name} must be an integer, not {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"setting {name} must be {_type_name(default)}, not {value!r}")
    if kind is float and not math.isfinite(value):  # "nan" or "inf" would pass every range check
        raise ConfigError(f"setting {name} must be a finite number, not {value!r}")
    if kind is list:
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"setting {name} must be a list of strings")
        value = tuple(value)
    return value


def _parse_env_text(name: str, kind: type, text: str) -> Any:
    text = text.strip()
    if kind is bool:
        low = text.lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"setting {name} must be true or false, not {text!r}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(
                f"setting {name} must be {_type_name(kind())}, not {text!r}"
            ) from None
    if kind is list:
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(f"setting {name} is not a valid JSON list") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def env_name(section: str | None, key: str) -> str:
    return f"IDP_{section.upper()}_{key.upper()}" if section else f"IDP_{key.upper()}"


def _env_map(defaults: dict[str, Any]) -> dict[str, tuple[str | None, str]]:
    names: dict[str, tuple[str | None, str]] = {}
    for key, value in defaults.items():
        if isinstance(value, dict):
            for sub in value:
                names[env_name(key, sub)] = (key, sub)
        else:
            names[env_name(None, key)] = (None, key)
    return names


def _merge(
    defaults: dict[str, Any],
    layer: Mapping[str, Any],
    origin: str,
    into: dict[str, Any],
    from_text: bool = False,
    explicit: set[str] | None = None,
) -> None:
    """Lay ``layer`` over ``into``; the dotted name of every key it sets goes into ``explicit``."""
    for key, value in layer.items():
        if key not in defaults:
            raise ConfigError(f"unknown setting {key!r} in {origin}")
        if isinstance(defaults[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"setting [{key}] in {origin} must be a table")
            for sub, subval in value.items():
                if sub not in defaults[key]:
                    raise ConfigError(f"unknown setting {key}.{sub} in {origin}")
                into[key][sub] = _coerce(f"{key}.{sub}", defaults[key][sub], subval, from_text)
                if explicit is not None:
                    explicit.add(f"{key}.{sub}")
        else:
            into[key] = _coerce(key, defaults[key], value, from_text)
            if explicit is not None:
                explicit.add(key)


class Section:
    """A frozen table of settings with attribute access; secrets are redacted in its repr."""

    __slots__ = ("_name", "_data")

    def __init__(self, name: str, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_data", MappingProxyType(data))

    def __getattr__(self, item: str) -> Any:
        try:
            return self._data[item]
        except KeyError:
            raise AttributeError(f"no setting {self._name}{item}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("settings are frozen")

    def __getitem__(self, item: str) -> Any:
        return self._data[item]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def as_dict(self) -> dict[str, Any]:
        return {k: v.as_dict() if isinstance(v, Section) else v for k, v in self._data.items()}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={redact(k, v)!r}" for k, v in self._data.items())
        return f"Settings({shown})" if not self._name else f"[{self._name.rstrip('.')}]({shown})"

    __str__ = __repr__


def redact(key: str, value: Any) -> Any:
    """What may be shown of a setting: secrets become '***', URL passwords are masked."""
    if isinstance(value, Section):
        return value
    if isinstance(value, str) and value:
        if _SECRET_NAMES.search(key):
            return "***"
        if key.endswith("url") or key.endswith("urls"):
            return redact_url(value)
    if isinstance(value, tuple) and key.endswith("urls"):
        return tuple(redact_url(v) for v in value)
    return value


@dataclass(frozen=True)
class SentinelAddress:
    """``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]`` (``rediss+``
    for TLS to the master): the Sentinels to ask, the monitored service's name, the database."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None
    tls: bool


def sentinel_address(url: str) -> SentinelAddress:
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for entry in hosts.split(","):
        host, _, port = entry.strip().rpartition(":")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError(f"a Sentinel must be written host:port, not {entry!r}")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("a Sentinel URL names the service after the hosts: .../mymaster[/db]")
    db = path[1] if len(path) == 2 else "0"
    if not (db.isascii() and db.isdigit()):
        raise ValueError(f"the database must be a number, not {db!r}")
    username, _, password = userinfo.partition(":")
    return SentinelAddress(
        tuple(sentinels),
        unquote(path[0]),
        int(db),
        unquote(username) or None,
        unquote(password) or None,
        parts.scheme.startswith("rediss"),
    )


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable: show nothing that could be a password
        scheme, sep, rest = url.partition("://")
        return f"{scheme}{sep}***@{rest.rpartition('@')[2]}" if "@" in rest else url
    if not parts.password:
        return url
    # The hosts as written (a Sentinel URL names several: h1:26379,h2:26379).
    hosts = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{hosts}"))


Settings = Section


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    applied: Mapping[str, Mapping[str, Any]] | None = None,
) -> Section:
    """Build the frozen settings; raise ConfigError with one readable line on any problem.
    ``applied``: the policies set with ``idp config apply`` ({section: {key: value}}), laid
    over the TOML file and under the environment."""
    environ = os.environ if environ is None else environ
    defaults = load_defaults()
    merged: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in defaults.items()}
    for key, value in list(merged.items()):
        if isinstance(value, dict):
            merged[key] = {s: _coerce(f"{key}.{s}", v, v) for s, v in value.items()}
        else:
            merged[key] = _coerce(key, value, value)

    # Settings some layer names, even to their default value: a derived default (auth.backends
    # following ldap.enabled) may only fill in what nobody set.
    explicit: set[str] = set()
    config_file = environ.get("IDP_CONFIG")
    if config_file:
        layer = _load_toml(Path(config_file), "config file")
        _merge(defaults, layer, config_file, merged, explicit=explicit)

    if applied:
        allowed = applied_keys(defaults)
        for section, values in applied.items():
            for key in values:
                if key not in allowed.get(section, ()):
                    raise ConfigError(
                        f"{section}.{key} in {APPLIED_ORIGIN} is not a policy setting"
                    )
        _merge(defaults, applied, APPLIED_ORIGIN, merged, explicit=explicit)

    names = _env_map(defaults)
    env_layer: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith("IDP_") or _NOT_SETTINGS.match(name):
            continue
        if name not in names:
            raise ConfigError(f"unknown setting in environment variable {name}")
        section, key = names[name]
        if section:
            env_layer.setdefault(section, {})[key] = text
        else:
            env_layer[key] = text
    _merge(defaults, env_layer, "the environment", merged, from_text=True, explicit=explicit)

    if overrides:
        _merge(defaults, overrides, "overrides", merged, explicit=explicit)

    _derive_and_validate(merged, explicit)
    return Section(
        "", {k: Section(f"{k}.", v) if isinstance(v, dict) else v for k, v in merged.items()}
    )


def _check_url(name: str, value: str, schemes: set[str]) -> None:
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # "http://[x": an IPv6 literal that does not close
        raise ConfigError(f"setting {name} is not a valid URL: {redact_url(value)!r}") from None
    if parts.scheme not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise ConfigError(
            f"setting {name} must be a URL with scheme {allowed}, not {redact_url(value)!r}"
        )
    if parts.scheme in {"http", "https", "redis", "rediss", "smtp", "smtps"} and not host:
        raise ConfigError(f"setting {name} has no host: {redact_url(value)!r}")


def _derive_and_validate(s: dict[str, Any], explicit: AbstractSet[str] = frozenset()) -> None:
    issuer = s["issuer"].rstrip("/")
    _check_url("issuer", issuer, {"http", "https"})
    parts = urlsplit(issuer)
    if parts.query or parts.fragment:
        raise ConfigError("setting issuer must not have a query or fragment")
    s["issuer"] = issuer

    try:
        s["instance_dir"] = str(Path(s["instance_dir"]).expanduser().resolve())
    except (ValueError, OSError) as exc:  # a NUL byte, a path the system cannot resolve
        raise ConfigError(f"setting instance_dir is not a usable path: {exc}") from None

    if not s["database_url"]:
        s["database_url"] = f"sqlite:///{Path(s['instance_dir']) / 'idp.db'}"
    try:
        url = make_url(s["database_url"])
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"setting database_url is not a database URL: {redact_url(s['database_url'])!r}"
        ) from None
    if url.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ConfigError("setting database_url must be a sqlite:// or postgresql+psycopg:// URL")
    if url.drivername == "postgresql":
        # A bare postgresql:// means psycopg 2 on SQLAlchemy 2.0; we ship psycopg 3.
        url = url.set(drivername="postgresql+psycopg")
        s["database_url"] = url.render_as_string(hide_password=False)
    if url.get_backend_name() == "postgresql" and url.get_driver_name() not in {"psycopg"}:
        raise ConfigError(
            "setting database_url must use the psycopg 3 driver: postgresql+psycopg://..."
        )

    if s["redis_url"]:
        _check_url(
            "redis_url",
            s["redis_url"],
            {"redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"},
        )
        if "+sentinel" in s["redis_url"].partition(":")[0]:
            try:
                sentinel_address(s["redis_url"])
            except ValueError as exc:
                raise ConfigError(f"setting redis_url: {exc}") from None
    if s["smtp_url"]:
        _check_url("smtp_url", s["smtp_url"], {"smtp", "smtps"})
    if s["sms_url"]:
        _check_url("sms_url", s["sms_url"], {"http", "https"})

    srv = s["server"]
    if not 0 < srv["port"] < 65536:
        raise ConfigError(f"setting server.port must be 1-65535, not {srv['port']}")
    for key in ("workers", "threads", "trusted_proxies"):
        if srv[key] < 0:
            raise ConfigError(f"setting server.{key} must not be negative")
    if not 0 <= srv["reload_poll_seconds"] <= 60:
        raise ConfigError("setting server.reload_poll_seconds must be 0-60")
    if srv["http"] not in ("1", "auto"):
        raise ConfigError('setting server.http must be "1" or "auto"')

    log = s["logging"]
    log["level"] = log["level"].upper()
    if log["level"] not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("setting logging.level must be DEBUG, INFO, WARNING or ERROR")
    if log["format"] not in {"text", "json"}:
        raise ConfigError('setting logging.format must be "text" or "json"')

    keys = s["keys"]
    if keys["rsa_bits"] < 2048:
        raise ConfigError("setting keys.rsa_bits must be at least 2048")
    if keys["encryption_key"] and len(keys["encryption_key"]) < 32:
        raise ConfigError("setting keys.encryption_key must be at least 32 characters")
    for key in ("rotation_overlap_days", "saml_cert_days"):
        if keys[key] < 1:
            raise ConfigError(f"setting keys.{key} must be at least 1")

    if not 0 < s["oidc"]["par_lifetime"] < 600:
        raise ConfigError("setting oidc.par_lifetime must be 1-599 seconds")

    out = s["outbound"]
    if not 0 < out["timeout"] <= 60:
        raise ConfigError("setting outbound.timeout must be 1-60 seconds")
    if out["max_bytes"] < 1024:
        raise ConfigError("setting outbound.max_bytes must be at least 1024")
    if out["failure_cache_seconds"] < 0:
        raise ConfigError("setting outbound.failure_cache_seconds must not be negative")

    if s["saml"]["encryption_algorithm"] not in SAML_ENCRYPTION_ALGORITHMS:
        raise ConfigError(
            "setting saml.encryption_algorithm must be one of "
            + ", ".join(SAML_ENCRYPTION_ALGORITHMS)
        )

    api = s["api"]
    for key in ("import_max_bytes", "import_max_rows"):
        if api[key] < 1:
            raise ConfigError(f"setting api.{key} must be at least 1")

    tracing = s["tracing"]
    if tracing["exporter"] not in ("otlp", "console"):
        raise ConfigError('setting tracing.exporter must be "otlp" or "console"')
    if not 0.0 <= tracing["sample_ratio"] <= 1.0:
        raise ConfigError("setting tracing.sample_ratio must be between 0.0 and 1.0")
    if tracing["exporter"] == "otlp":
        _check_url("tracing.endpoint", tracing["endpoint"], {"http", "https"})

    for name in (
        "metrics.allowed_networks",
        "admin.allowed_networks",
        "api.allowed_networks",
        "server.trusted_proxy_networks",
        "ip_rules.allow",
        "ip_rules.deny",
    ):
        section, key = name.split(".")
        try:
            s[section][key] = tuple(canonical(str(n) for n in s[section][key]))
        except InvalidNetwork as exc:
            raise ConfigError(f"setting {name}: {exc}") from None

    _validate_sender_constraints(s)
    _validate_ldap(s["ldap"])
    _derive_backends(s, explicit)
    _validate_mfa(s["mfa"])
    _validate_policies(s)
    _validate_risk(s["risk"])
    _validate_rate_limits(s["rate_limits"])
    if not 10 <= s["oidc"]["jarm_lifetime"] <= 600:
        # JARM §2.1: the response JWT is short-lived; it is read at once by the redirect.
        raise ConfigError("setting oidc.jarm_lifetime must be between 10 and 600 seconds")
    _validate_gdpr(s["gdpr"])
    _validate_audit(s["audit"])
    _validate_notifications(s)
    _validate_device(s["device"])


def _validate_device(d: dict[str, Any]) -> None:
    """[device] (RFC 8628): lifetimes and limits a device and a person can live with."""
    if not 60 <= d["code_lifetime"] <= 3600:
        raise ConfigError("setting device.code_lifetime must be between 60 and 3600")
    if not 1 <= d["interval"] <= 60:
        raise ConfigError("setting device.interval must be between 1 and 60")
    if d["max_user_code_attempts"] < 1:
        raise ConfigError("setting device.max_user_code_attempts must be at least 1")
    if d["user_code_lockout"] < 1:
        raise ConfigError("setting device.user_code_lockout must be at least 1")


def _validate_sender_constraints(s: dict[str, Any]) -> None:
    """[dpop] windows; [mtls] a header name, and the proxies it may come from."""
    dpop = s["dpop"]
    if not 1 <= dpop["max_age"] <= 600:
        raise ConfigError("setting dpop.max_age must be 1-600 seconds")
    if not 0 <= dpop["leeway"] <= 60:
        raise ConfigError("setting dpop.leeway must be 0-60 seconds")
    header = s["mtls"]["client_cert_header"]
    if header and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", header):
        raise ConfigError("setting mtls.client_cert_header must be a header name (letters, "
                          "digits, '-')")
    if header and not s["server"]["trusted_proxy_networks"]:
        raise ConfigError("setting mtls.client_cert_header needs server.trusted_proxy_networks: "
                          "the certificate is believed only from those proxies")


def _validate_gdpr(g: dict[str, Any]) -> None:
    """[gdpr]: the deletion mode, non-negative retention periods, http(s) links."""
    if g["deletion"] not in ("immediate", "approval", "off"):
        raise ConfigError('setting gdpr.deletion must be "immediate", "approval" or "off"')
    for key in ("inactive_erase_days", "request_retention_days"):
        if g[key] < 0:
            raise ConfigError(f"setting gdpr.{key} must not be negative")
    if len(g["terms_version"]) > 64:
        raise ConfigError("setting gdpr.terms_version must be at most 64 characters")
    for key in ("terms_url", "privacy_url"):
        if g[key]:
            _check_url(f"gdpr.{key}", g[key], {"http", "https"})


def _validate_audit(audit: dict[str, Any]) -> None:
    if not 0 <= audit["retention_days"] <= 36500:
        raise ConfigError("setting audit.retention_days must be between 0 and 36500")
    if audit["stream"] not in ("", "file", "syslog"):
        raise ConfigError('setting audit.stream must be "", "file" or "syslog"')
    if audit["stream"] == "file" and not audit["stream_path"]:
        raise ConfigError("setting audit.stream_path must be set for the file stream")
    address = audit["syslog_address"]
    if audit["stream"] == "syslog" and not address.startswith("/"):
        host, _, port = address.rpartition(":")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ConfigError(
                "setting audit.syslog_address must be host:port or a Unix socket path"
            )


def _validate_policies(s: dict[str, Any]) -> None:
    """[password_policy], [lockout] and [session]: choices and sane ranges."""
    pw = s["password_policy"]
    if pw["mode"] not in ("classic", "nist"):
        raise ConfigError('setting password_policy.mode must be "classic" or "nist"')
    if not 1 <= pw["min_length"] <= pw["max_length"]:
        raise ConfigError(
            "setting password_policy.min_length must be at least 1 and at most max_length"
        )
    for key in ("max_age_days", "warn_days", "history", "min_age_minutes"):
        if pw[key] < 0:
            raise ConfigError(f"setting password_policy.{key} must not be negative")
    for key, value in s["lockout"].items():
        if not isinstance(value, bool) and value < 0:
            raise ConfigError(f"setting lockout.{key} must not be negative")
    for key in ("idle_minutes", "max_hours"):
        if s["session"][key] < 1:
            raise ConfigError(f"setting session.{key} must be at least 1")
    if not 0 <= s["session"]["remember_me_days"] <= 3650:
        raise ConfigError("setting session.remember_me_days must be between 0 and 3650")
    if not 0 <= s["session"]["max_per_user"] <= 10000:
        raise ConfigError("setting session.max_per_user must be between 0 and 10000")
    if s["session"]["limit_action"] not in ("end_oldest", "refuse"):
        raise ConfigError('setting session.limit_action must be "end_oldest" or "refuse"')
    _validate_branding(s["branding"])
    for address in s["registration"]["admin_emails"]:
        if not _EMAIL.fullmatch(address):
            raise ConfigError(
                f"setting registration.admin_emails: {address!r} is not an e-mail address"
            )
    for domain in s["registration"]["allowed_domains"]:
        if not _DOMAIN.fullmatch(domain):
            raise ConfigError(f"setting registration.allowed_domains: {domain!r} is not a domain")


def _validate_rate_limits(limits: dict[str, Any]) -> None:
    """[rate_limits]: no negative limit, every window at least a second."""
    for key, value in limits.items():
        if key.endswith("_window_seconds") and value < 1:
            raise ConfigError(f"setting rate_limits.{key} must be at least 1")
        if not isinstance(value, bool) and value < 0:
            raise ConfigError(f"setting rate_limits.{key} must not be negative")


def _validate_risk(risk: dict[str, Any]) -> None:
    """[risk]: no negative counts, and a history long enough for the rules that read it."""
    for key, value in risk.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"setting risk.{key} must not be negative")
    if risk["step_up_without_factor"] not in ("deny", "allow"):
        raise ConfigError('setting risk.step_up_without_factor must be "deny" or "allow"')
    if risk["history_days"] < 1:
        raise ConfigError("setting risk.history_days must be at least 1")
    for key in (
        "stuffing_window_minutes",
        "stuffing_block_minutes",
        "mfa_burst_window_minutes",
        "failure_window_minutes",
    ):
        if risk[key] < 1:
            raise ConfigError(f"setting risk.{key} must be at least 1")


def _validate_notifications(s: dict[str, Any]) -> None:
    """[devices] and [notifications]: known kinds, addresses and sane ranges."""
    if not 1 <= s["devices"]["cookie_days"] <= 3650:
        raise ConfigError("setting devices.cookie_days must be between 1 and 3650")
    if not 1 <= s["devices"]["max_per_user"] <= 1000:
        raise ConfigError("setting devices.max_per_user must be between 1 and 1000")
    n = s["notifications"]
    for kind in n["user_may_disable"]:
        if kind not in NOTIFICATION_KINDS:
            raise ConfigError(
                f"setting notifications.user_may_disable: {kind!r} is not one of "
                + ", ".join(NOTIFICATION_KINDS)
            )
    for address in n["admin_emails"]:
        if not _EMAIL.fullmatch(str(address)):
            raise ConfigError(
                f"setting notifications.admin_emails: {address!r} is not an e-mail address"
            )
    if not 1 <= n["digest_minutes"] <= 1440:
        raise ConfigError("setting notifications.digest_minutes must be between 1 and 1440")


_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_LANGUAGE = re.compile(r"[a-z]{2,3}([_-][A-Za-z0-9]{2,8})*")
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-zA-Z0-9-]{1,63}\.)+[a-zA-Z]{2,63}")


def _validate_branding(b: dict[str, Any]) -> None:
    """[branding]: colours are #rrggbb (they go into a style sheet), the logo is an absolute
    http(s) URL or a path on this server, texts are short and on one line."""
    for key in ("primary_color", "background_color", "text_color"):
        if not _COLOR.fullmatch(b[key]):
            raise ConfigError(f"setting branding.{key} must be a colour like #1d4ed8")
    logo = b["logo_url"]
    if logo and not logo.startswith("/"):
        _check_url("branding.logo_url", logo, {"http", "https"})
    if logo and any(c in logo for c in "\"'<>\\ ") or logo.startswith("//"):
        raise ConfigError("setting branding.logo_url must be a plain URL")
    if not 1 <= len(b["product_name"].strip()) <= 80 or "\n" in b["product_name"]:
        raise ConfigError("setting branding.product_name must be 1-80 characters on one line")
    if len(b["support_text"]) > 500:
        raise ConfigError("setting branding.support_text must be at most 500 characters")
    if not b["languages"] or not all(_LANGUAGE.fullmatch(x) for x in b["languages"]):
        raise ConfigError("setting branding.languages must be language codes such as en, de")


def environment_keys(
    defaults: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> set[str]:
    """The dotted names of the settings an ``IDP_*`` environment variable sets (they win over
    everything stored, so screens show them read-only)."""
    environ = os.environ if environ is None else environ
    names = _env_map(load_defaults() if defaults is None else dict(defaults))
    return {
        f"{section}.{key}" if section else key
        for name, (section, key) in names.items()
        if name in environ
    }


def with_applied(base: Section, changes: Mapping[str, Mapping[str, Any]]) -> Section:
    """``base`` (running settings) with policy ``changes`` laid over them, checked with the same
    rules as :func:`load_settings`: raises ConfigError naming the first bad setting."""
    defaults = load_defaults()
    allowed = applied_keys(defaults)
    for section, values in changes.items():
        for key in values:
            if key not in allowed.get(section, ()):
                raise ConfigError(f"{section}.{key} in {APPLIED_ORIGIN} is not a policy setting")
    merged: dict[str, Any] = base.as_dict()
    _merge(defaults, changes, APPLIED_ORIGIN, merged)
    _derive_and_validate(merged, {"auth.backends"})
    return Section(
        "", {k: Section(f"{k}.", v) if isinstance(v, dict) else v for k, v in merged.items()}
    )


def _derive_backends(s: dict[str, Any], explicit: AbstractSet[str]) -> None:
    """``[ldap] enabled = true`` turns directory sign-in on by itself: with ``auth.backends`` left
    unset the chain becomes local users first, then the directory (what Keycloak does with a
    user-federation provider: local users are looked up before the federation). An operator's own
    ``auth.backends`` is kept, but one that leaves "ldap" out while LDAP is enabled is a
    contradiction that would silently ignore the directory, so start-up stops on it."""
    if not s["ldap"]["enabled"] or "ldap" in s["auth"]["backends"]:
        return
    if "auth.backends" not in explicit:
        s["auth"]["backends"] = (*s["auth"]["backends"], "ldap")
        return
    chosen = json.dumps(list(s["auth"]["backends"]))
    raise ConfigError(
        f'setting ldap.enabled is true but auth.backends = {chosen} leaves out "ldap": '
        'add it (e.g. ["local", "ldap"]) or leave auth.backends unset'
    )


def _validate_mfa(mfa: dict[str, Any]) -> None:
    """The [mfa] section: policy lines parse, sizes are sane (RFC 6238 codes of 6-8 digits)."""
    from .core.policy import MfaRule

    for line in mfa["policies"]:
        try:
            MfaRule.parse(line)
        except ValueError as exc:
            raise ConfigError(f"setting mfa.policies: {exc}") from None
    if mfa["totp_digits"] not in (6, 7, 8):
        raise ConfigError("setting mfa.totp_digits must be 6, 7 or 8")
    if not 15 <= mfa["totp_period"] <= 120:
        raise ConfigError("setting mfa.totp_period must be 15-120 seconds")
    if not 0 <= mfa["backup_codes"] <= 50:
        raise ConfigError("setting mfa.backup_codes must be 0-50")
    if not 60 <= mfa["code_ttl_seconds"] <= 600:
        raise ConfigError("setting mfa.code_ttl_seconds must be 60-600 (ASVS: at most 10 minutes)")
    for key in ("grace_days", "remember_days", "max_sends", "reauth_minutes"):
        if mfa[key] < 0:
            raise ConfigError(f"setting mfa.{key} must not be negative")
    if mfa["send_window_seconds"] < 1:
        raise ConfigError("setting mfa.send_window_seconds must be at least 1")


def _validate_ldap(ldap: dict[str, Any]) -> None:
    """The [ldap] section: server URLs, choices, positive sizes, group->role map entries."""
    for url in ((ldap["url"],) if ldap["url"] else ()) + tuple(ldap["urls"]):
        parts = urlsplit(url)
        if parts.scheme not in {"ldap", "ldaps"} or not parts.hostname:
            raise ConfigError(f"setting ldap.url(s) must be ldap:// or ldaps:// URLs, not {url!r}")
    if ldap["enabled"] and not (ldap["url"] or ldap["urls"]):
        raise ConfigError("setting ldap.enabled needs ldap.url or ldap.urls")
    if ldap["enabled"] and not ldap["user_base_dn"]:
        raise ConfigError("setting ldap.enabled needs ldap.user_base_dn")
    if "{username}" not in ldap["user_filter"]:
        raise ConfigError("setting ldap.user_filter must contain {username}")
    if "{user_dn}" not in ldap["group_filter"]:
        raise ConfigError("setting ldap.group_filter must contain {user_dn}")
    choices = {
        "group_membership": {"search", "memberof"},
        "nested_groups": {"auto", "in_chain", "recursive", "off"},
    }
    for key, allowed in choices.items():
        if ldap[key] not in allowed:
            raise ConfigError(f"setting ldap.{key} must be one of {', '.join(sorted(allowed))}")
    for key in ("connect_timeout", "receive_timeout", "pool_size", "sync_page_size"):
        if ldap[key] < 1:
            raise ConfigError(f"setting ldap.{key} must be at least 1")
    for key in ("server_retry_seconds", "sync_interval_minutes", "full_sync_interval_minutes"):
        if ldap[key] < 0:
            raise ConfigError(f"setting ldap.{key} must not be negative")
    if not 1 <= ldap["max_username_length"] <= 1024:
        raise ConfigError("setting ldap.max_username_length must be 1-1024")
    for item in ldap["group_role_map"]:
        group, sep, role = item.partition("=")
        if not sep or not group.strip() or not role.strip():
            raise ConfigError(f"setting ldap.group_role_map entries are 'group=role', not {item!r}")
