"""The container of concrete parts, built once from settings (by ``create_app`` or the CLI).

Every part is a typed field, built once and explicitly: by :func:`build_services` when it needs
only settings, by ``create_app`` when it needs the web layer (the Flask-bound session manager).
Registries (consent sources, SMS senders, credential backends, second factors) are fields too,
filled when the app is built, so two apps in one process never see each other's registrations
(design ideas 8 and 9). The few parts that are costly or can fail on configuration a command
never uses (the credential chain, the LDAP connector, the WebAuthn relying party, the SMS
sender) are typed properties built on first use, once per Services.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from .clock import Clock
from .crypto import KeyedHasher, Sealer, derive_key
from .errors import StartupError
from .keys import KeyManager
from .settings import Section, load_settings, redact_url
from .storage.audit import SINK as AUDIT_SINK
from .storage.db import make_engine, make_session_factory
from .storage.provisioning import install as install_provisioning_hook
from .storage.store import make_store

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from .backends.enrolment import EnrolmentQuery
    from .backends.geoip import GeoIp
    from .backends.ldap import LdapConnector
    from .backends.passwords import PasswordHasher
    from .backends.webauthn import RelyingParty
    from .core.credentials import CredentialBackend, CredentialChain
    from .core.policy import MfaPolicy
    from .core.steps import Factor
    from .delivery.mail import Mailer, MailQueue
    from .delivery.outbound import Outbound
    from .delivery.sms import SenderFactory, SmsSender
    from .oidc.clients import ClientCache
    from .oidc.server import Engine as OidcEngine
    from .saml.engine import SamlIdp
    from .sso.network import StoredRulesCache
    from .sso.sessions import SessionManager

# A source of consented applications for /account/apps (the OIDC consent store is one):
#   list(svc, user) -> [{"key", "name", "logo_uri"?, "scopes": [...], "granted_at"?}]
#   revoke(svc, user, key) -> None
ConsentLister = Callable[[Any, Any], list[dict[str, Any]]]
ConsentRevoker = Callable[[Any, Any, str], None]
BackendFactory = Callable[["Services"], "CredentialBackend"]


def ensure_instance_dir(path: str) -> Path:
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        # A name of its own per process: several workers start at once and probe together.
        probe = p / f".write-test-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"instance dir {p} is not writable: {exc.strerror}") from None
    return p


def load_secret_key(settings: Section) -> str:
    """IDP_SECRET_KEY, else a key generated once into {instance_dir}/secret_key (0600)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.instance_dir) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    # Written under a private name, then linked into place: link() fails if another worker
    # got there first, and no worker can ever read a created-but-not-yet-written file.
    tmp = path.with_name(f".secret_key-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    try:
        os.link(tmp, path)
    except FileExistsError:  # another worker won the race: everyone uses its key
        return path.read_text().strip()
    finally:
        tmp.unlink()
    return key


@dataclass
class Services:
    settings: Section
    clock: Clock
    engine: Engine
    sessions: sessionmaker[Session]
    store: Any
    keys: KeyManager
    secret_key: str
    hasher: KeyedHasher
    sealer: Sealer
    # Built from settings in build_services.
    password_hasher: PasswordHasher
    mfa_policy: MfaPolicy
    mailer: Mailer
    mail_queue: MailQueue
    enrolment_query: EnrolmentQuery
    # The hub's SSO session manager: create_app builds the web layer's request-bound one; a
    # command without an app gets the plain one. Set by build_services right after the rest
    # (the manager is built from the Services).
    sso_sessions: SessionManager = field(default=None, kw_only=True)  # type: ignore[assignment]
    # Registries, by id; filled in build_services (built-ins) and create_app.
    credential_backends: dict[str, BackendFactory] = field(default_factory=dict)
    sms_senders: dict[str, SenderFactory] = field(default_factory=dict)
    consent_sources: list[tuple[ConsentLister, ConsentRevoker]] = field(default_factory=list)
    # Second factors of the MFA step, by id, in the order the chooser shows them: the built-ins
    # are registered by create_app (their labels are translated strings and the code factors
    # send through the web layer, neither of which the engines that import this module may
    # pull in), plugins by ``idp.core.steps.register_factor(svc, factor)``.
    factors: dict[str, Factor] = field(default_factory=dict)
    # Caches of documents and pages rendered once per worker (web/wellknown.py, web/kept.py).
    wellknown_cache: dict[tuple[Any, ...], tuple[str, str]] = field(default_factory=dict)
    kept_pages: dict[tuple[Any, ...], tuple[str, ...]] = field(default_factory=dict)
    # The protocol engines' parts, each built once per app, on first use, by its package's one
    # accessor (idp.oidc.server.engine, idp.oidc.clients.client_cache, idp.oidc.logout's
    # back-channel pool, idp.saml.engine.saml_idp, idp.saml.logout's SOAP pool; the outbound
    # HTTP guard by idp.delivery.outbound.outbound): the container cannot
    # import the engines (they sit above it), and a command that signs no one in never builds
    # them.
    oidc_engine: OidcEngine | None = field(default=None, kw_only=True)
    oidc_client_cache: ClientCache | None = field(default=None, kw_only=True)
    ip_rules_cache: StoredRulesCache | None = field(default=None, kw_only=True)  # idp.sso.network
    outbound: Outbound | None = field(default=None, kw_only=True)
    oidc_backchannel_pool: ThreadPoolExecutor | None = field(default=None, kw_only=True)
    saml_engine: SamlIdp | None = field(default=None, kw_only=True)
    saml_backchannel_pool: ThreadPoolExecutor | None = field(default=None, kw_only=True)
    broker_outbound: Outbound | None = field(default=None, kw_only=True)  # idp.broker.http
    # Discovery entries of the mounted OIDC surface (web/oidc/discovery.py), which
    # web/wellknown.py serves: the document never names an endpoint that is not mounted.
    discovery: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def credential_chain(self) -> CredentialChain:
        """``[auth] backends`` in order, each built by its registered factory."""
        from .backends.chain import build_chain

        return build_chain(self)

    @cached_property
    def ldap_connector(self) -> LdapConnector:
        """The connector whose pool the LDAP backend, sync and the CLI share."""
        from .backends.ldap import LdapConnector

        return LdapConnector(self.settings.ldap)

    @cached_property
    def geoip(self) -> GeoIp:
        """Locations of addresses from ``[geoip] database`` (every answer None without one)."""
        from .backends.geoip import GeoIp

        return GeoIp(self.settings.geoip.database)

    @cached_property
    def webauthn_rp(self) -> RelyingParty:
        from .backends.webauthn import RelyingParty

        return RelyingParty.from_settings(self.settings)

    @cached_property
    def sms_sender(self) -> SmsSender:
        """The ``[mfa] sms_sender`` gateway (outbox files without ``sms_url``)."""
        from .delivery.sms import make_sms_sender

        return make_sms_sender(self.settings, self.sms_senders)

    def check_database(self) -> None:
        """Raise StartupError with a one-line reason when the database cannot be reached."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            reason = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
            raise StartupError(
                f"database {redact_url(self.settings.database_url)} is not reachable: {reason}"
            ) from None


def load_effective_settings(
    overrides: dict[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Section:
    """The settings a node runs with: ``load_settings`` plus the policies applied with
    ``idp config apply`` (read once, here, from the database the settings name)."""
    from .storage.applied_settings import read_applied

    settings = load_settings(overrides, environ)
    applied = read_applied(settings)
    return load_settings(overrides, environ, applied=applied) if applied else settings


def build_services(
    settings: Section,
    clock: Clock | None = None,
    session_manager: Callable[[Services], SessionManager] | None = None,
) -> Services:
    """Every part from settings. ``session_manager`` builds the SSO session manager (create_app
    passes the web layer's; the plain one otherwise)."""
    from .backends.chain import BUILT_IN_BACKENDS
    from .backends.enrolment import EnrolmentQuery
    from .backends.passwords import PasswordHasher
    from .core.policy import MfaPolicy
    from .delivery.mail import make_mailer, make_queue
    from .delivery.siem import make_audit_sink
    from .delivery.sms import BUILT_IN_SENDERS
    from .sso.sessions import SessionManager

    clock = clock or Clock()
    ensure_instance_dir(settings.instance_dir)
    db = settings.database
    engine = make_engine(
        settings.database_url,
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        connect_timeout=db.connect_timeout,
        echo=db.echo,
    )
    sessions = make_session_factory(engine)
    install_provisioning_hook(sessions, clock)
    audit_sink = make_audit_sink(settings.audit, settings.instance_dir)
    if audit_sink is not None:
        sessions.configure(info={AUDIT_SINK: audit_sink})
    secret_key = load_secret_key(settings)
    # Values sealed at rest use the key-encryption key when set, else the secret key.
    seal_master = settings.keys.encryption_key or secret_key
    mailer = make_mailer(settings)
    svc = Services(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=sessions,
        store=make_store(settings, engine, clock),
        keys=KeyManager(sessions, settings, clock),
        secret_key=secret_key,
        hasher=KeyedHasher(derive_key(secret_key, "keyed-hash")),
        sealer=Sealer(derive_key(seal_master, "sealed-values")),
        password_hasher=PasswordHasher(settings.auth.max_concurrent_hashes),
        mfa_policy=MfaPolicy.from_settings(settings.mfa),
        mailer=mailer,
        mail_queue=make_queue(
            settings,
            mailer.transport,
            _mail_outbox(settings, sessions, clock, Sealer(derive_key(seal_master, "mail-outbox"))),
        ),
        enrolment_query=EnrolmentQuery(),
        credential_backends=dict(BUILT_IN_BACKENDS),
        sms_senders=dict(BUILT_IN_SENDERS),
    )
    svc.sso_sessions = (session_manager or SessionManager)(svc)
    return svc


def _mail_outbox(
    settings: Section, sessions: sessionmaker[Session], clock: Clock, sealer: Sealer
) -> Any:
    from .storage.mail_outbox import SqlOutbox

    # A lease outlasts one delivery (a few SMTP round trips, each up to the timeout) with room
    # to spare: a worker that ended mid-delivery hands its mail on once it runs out.
    return SqlOutbox(
        sessions, clock.utcnow, lease_seconds=6 * settings.mail.timeout + 60, sealer=sealer
    )
