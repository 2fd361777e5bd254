"""LDAP logins per second through the credential chain, against a real local slapd.

    .venv/bin/python bench/bench_ldap.py [--logins 200] [--rounds 3] [--threads 4]

Starts slapd (Debian packages slapd, ldap-utils) on loopback ports in a temp dir with the test
directory, builds the IdP's services on a temp SQLite database with auth.backends =
["local", "ldap"], and times, side by side in one run: a successful login (search + user bind +
nested groups + refresh of the local row), a wrong password, plain ldap:// vs ldaps://, and
several threads sharing the pool. The chain asks the local backend first, which spends one
argon2id hash on every name it does not own (equal cost for unknown users), so "ldap backend
alone" shows the directory's own share. Prints the median of the rounds, in logins/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from idp.backends.chain import credential_chain  # noqa: E402
from idp.core.credentials import Outcome  # noqa: E402
from idp.services import build_services  # noqa: E402
from idp.settings import load_settings  # noqa: E402
from idp.storage.migrate import upgrade  # noqa: E402
from tests.ldap import slapd_server as s  # noqa: E402


def _services(tmp: Path, name: str, backends=("local", "ldap"), **ldap):
    settings = load_settings(
        {
            "instance_dir": str(tmp / name),
            "auth": {"backends": list(backends)},
            "ldap": {
                "enabled": True,
                "bind_dn": s.SERVICE_DN,
                "bind_password": s.SERVICE_PW,
                "user_base_dn": f"ou=people,{s.SUFFIX}",
                "group_base_dn": f"ou=groups,{s.SUFFIX}",
                **ldap,
            },
        },
        environ={},
    )
    svc = build_services(settings)
    upgrade(svc.engine)
    return svc


def _rate(chain, logins: int, threads: int, password: str, expect: Outcome) -> float:
    def one(_: int) -> None:
        verdict = chain.verify("alice", password)
        if verdict.outcome is not expect:
            raise RuntimeError(f"unexpected {verdict}")

    start = time.perf_counter()
    if threads == 1:
        for i in range(logins):
            one(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(logins)))
    return logins / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    if not s.available():
        sys.exit("bench_ldap: slapd / ldap-utils are not installed")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = s.start_slapd(tmp / "slapd", s.make_pki(tmp / "pki"))
        try:
            plain = credential_chain(_services(tmp, "plain", url=server.url))
            tls = credential_chain(
                _services(tmp, "tls", url=server.ldaps_url, ca_file=str(server.pki.ca_file))
            )
            alone = credential_chain(_services(tmp, "alone", ("ldap",), url=server.url))
            good = s.PASSWORDS["alice"]
            cases = {
                "ldap backend alone, ldap://, 1 thread": (alone, 1, good, Outcome.VALID),
                f"ldap backend alone, {args.threads} threads": (
                    alone,
                    args.threads,
                    good,
                    Outcome.VALID,
                ),
                "login ok, ldap://, 1 thread": (plain, 1, good, Outcome.VALID),
                "wrong password, ldap://, 1 thread": (plain, 1, "wrong", Outcome.INVALID),
                "login ok, ldaps://, 1 thread": (tls, 1, good, Outcome.VALID),
                f"login ok, ldap://, {args.threads} threads": (
                    plain,
                    args.threads,
                    good,
                    Outcome.VALID,
                ),
            }
            for chain, *_ in cases.values():  # warm up: first-login provisioning, pool, TLS
                chain.verify("alice", good)
            results: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, (chain, threads, password, expect) in cases.items():
                    results[name].append(_rate(chain, args.logins, threads, password, expect))
        finally:
            server.stop()
    print(f"LDAP logins/s through the chain (median of {args.rounds} x {args.logins}):")
    for name, rates in results.items():
        print(f"  {name:40} {statistics.median(rates):8.1f}")


if __name__ == "__main__":
    main()
