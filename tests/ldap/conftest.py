"""Fixtures for the LDAP tier: a real slapd per test module, and apps configured against it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from support import require

from . import slapd_server as slapd_mod


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> slapd_mod.Pki:
    return slapd_mod.make_pki(tmp_path_factory.mktemp("pki"))


def _start(tmp_path_factory: pytest.TempPathFactory, pki: slapd_mod.Pki) -> slapd_mod.Slapd:
    require(
        slapd_mod.available(),
        "slapd / ldap-utils are not installed (apt-get install slapd ldap-utils)",
    )
    return slapd_mod.start_slapd(tmp_path_factory.mktemp("slapd"), pki)


@pytest.fixture(scope="module")
def slapd(
    tmp_path_factory: pytest.TempPathFactory, pki: slapd_mod.Pki
) -> Iterator[slapd_mod.Slapd]:
    server = _start(tmp_path_factory, pki)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def start_extra_slapd(
    tmp_path_factory: pytest.TempPathFactory, pki: slapd_mod.Pki
) -> Iterator[Callable[[], slapd_mod.Slapd]]:
    """Start more servers (failover tests); every one is stopped by PID at the end."""
    started: list[slapd_mod.Slapd] = []

    def start() -> slapd_mod.Slapd:
        server = _start(tmp_path_factory, pki)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def ldap_settings(server: slapd_mod.Slapd, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "enabled": True,
        "url": server.url,
        "bind_dn": slapd_mod.SERVICE_DN,
        "bind_password": slapd_mod.SERVICE_PW,
        "user_base_dn": f"ou=people,{slapd_mod.SUFFIX}",
        "group_base_dn": f"ou=groups,{slapd_mod.SUFFIX}",
        "connect_timeout": 2,
        "receive_timeout": 5,
    }
    settings.update(extra)
    return settings


@pytest.fixture
def ldap_app(make_app: Callable[..., Any], slapd: slapd_mod.Slapd) -> Callable[..., Any]:
    """ldap_app(**ldap_settings) -> an app whose chain is ["local", "ldap"] against ``slapd``."""

    def factory(server: slapd_mod.Slapd | None = None, **extra: Any) -> Any:
        return make_app(
            auth={"backends": ["local", "ldap"]},
            ldap=ldap_settings(server or slapd, **extra),
        )

    return factory


def table_counts(svc: Any) -> dict[str, int]:
    """Row counts of every table a login could touch: hostile input must change none."""
    from idp.storage import models
    from idp.storage.models_ldap import LdapAccount, LdapGroup

    tables = [
        models.User,
        models.Group,
        models.GroupMember,
        models.Role,
        models.GroupRole,
        models.UserRole,
        LdapAccount,
        LdapGroup,
    ]
    with svc.sessions() as db:
        return {t.__tablename__: db.scalar(select(func.count()).select_from(t)) for t in tables}
