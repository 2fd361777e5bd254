"""Mutation testing (mutmut 3) of the security-critical modules, one target at a time.

mutmut reads one ``[tool.mutmut]`` table and runs every test of its selection that reaches a
mutated function; over the whole suite a run would not end in a day. So each target below
names its module(s), the functions worth mutating (mutmut's mutant-name globs) and the few test
files that are about it; ``run(name)`` lays out a work directory under ``.mutation/<name>/``
whose pyproject.toml is ours with ``[tool.mutmut]`` narrowed to that target, runs mutmut there
and returns the counts. The shared settings stay in pyproject.toml ``[tool.mutmut]`` (its
``only_mutate`` and test selection are the union of the targets: tests/test_mutation_tier.py
checks that they agree).

    .venv/bin/python tests/mutation_kit.py lockout [--max-children 2]
    .venv/bin/python tests/mutation_kit.py all

Results: ``.mutation/<name>/mutants/`` (``cd`` there and run ``mutmut results`` / ``mutmut show
NAME`` to read a surviving mutant). docs/development.md "Mutation testing" has the last rates.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
# What a run needs besides idp/ and tests/ (mutmut copies both into its mutants/ folder).
LINKED = ("idp", "tests", "templates", "config", "migrations", "federation", "README.md")


@dataclass(frozen=True)
class Target:
    files: tuple[str, ...]
    tests: tuple[str, ...]
    # mutmut mutant-name globs (module.x_function__mutmut_N); empty = every mutant of the files.
    functions: tuple[str, ...] = ()
    # Surviving mutants that change nothing anyone can observe (docs/development.md "Mutation
    # testing" gives each one's reason): not killable, so left out of the kill rate. A code
    # change renumbers mutants; a listed name that no longer survives for that reason shows
    # up as a survivor again.
    equivalent: tuple[str, ...] = ()


TARGETS: dict[str, Target] = {
    "lockout": Target(
        ("idp/backends/lockout.py",),
        ("tests/test_lockout_counters.py",),
    ),
    "totp": Target(
        ("idp/backends/totp.py",),
        ("tests/test_totp_steps.py", "tests/test_totp_check.py"),
        ("idp.backends.totp.x_matching_step*", "idp.backends.totp.x_check*",
         "idp.backends.totp.x_normalize*", "idp.backends.totp.x_save*"),
        ("idp.backends.totp.x_check__mutmut_63", "idp.backends.totp.x_matching_step__mutmut_13",
         "idp.backends.totp.x_matching_step__mutmut_16"),
    ),
    "pkce": Target(
        ("idp/oidc/server.py",),
        ("tests/oidc/test_pkce_rules.py", "tests/oidc/test_authorization_endpoint.py"),
        ("idp.oidc.server.xǁS256Onlyǁ*",),
        ("idp.oidc.server.xǁS256Onlyǁvalidate_code_challenge__mutmut_2",
         "idp.oidc.server.xǁS256Onlyǁvalidate_code_challenge__mutmut_18",
         "idp.oidc.server.xǁS256Onlyǁvalidate_code_challenge__mutmut_20",
         "idp.oidc.server.xǁS256Onlyǁvalidate_code_challenge__mutmut_28",
         "idp.oidc.server.xǁS256Onlyǁvalidate_code_challenge__mutmut_30",
         "idp.oidc.server.xǁS256Onlyǁvalidate_code_challenge__mutmut_40",
         "idp.oidc.server.xǁS256Onlyǁvalidate_code_challenge__mutmut_42",
         "idp.oidc.server.xǁS256Onlyǁget_authorization_code_challenge_method__mutmut_1",
         "idp.oidc.server.xǁS256Onlyǁget_authorization_code_challenge_method__mutmut_2",
         "idp.oidc.server.xǁS256Onlyǁget_authorization_code_challenge_method__mutmut_3"),
    ),
    "client_auth": Target(
        ("idp/oidc/server.py", "idp/oidc/clients.py"),
        ("tests/oidc/test_client_auth_rules.py",),
        ("idp.oidc.server.xǁ_JWTClientAuthǁ*", "idp.oidc.server.xǁClientSecretJWTAuthǁ*",
         "idp.oidc.server.xǁPrivateKeyJWTAuthǁ*",
         "idp.oidc.clients.xǁOAuthClientǁcheck_client_secret*",
         "idp.oidc.clients.xǁOAuthClientǁcheck_endpoint_auth_method*"),
        ("idp.oidc.clients.xǁOAuthClientǁcheck_client_secret__mutmut_8",
         "idp.oidc.server.xǁClientSecretJWTAuthǁresolve_client_public_key__mutmut_3",
         "idp.oidc.server.xǁClientSecretJWTAuthǁresolve_client_public_key__mutmut_4",
         "idp.oidc.server.xǁ_JWTClientAuthǁ__call____mutmut_12",
         "idp.oidc.server.xǁ_JWTClientAuthǁ__call____mutmut_19",
         "idp.oidc.server.xǁ_JWTClientAuthǁvalidate_jti__mutmut_11",
         "idp.oidc.server.xǁ_JWTClientAuthǁvalidate_jti__mutmut_13",
         "idp.oidc.server.xǁ_JWTClientAuthǁvalidate_jti__mutmut_16",
         "idp.oidc.server.xǁ_JWTClientAuthǁvalidate_jti__mutmut_19",
         "idp.oidc.server.xǁ_JWTClientAuthǁvalidate_jti__mutmut_27"),
    ),
    "refresh": Target(
        ("idp/oidc/server.py",),
        ("tests/oidc/test_refresh_rotation_mutants.py",),
        ("idp.oidc.server.xǁEngineǁuse_refresh_token*", "idp.oidc.server.xǁEngineǁ_refreshable*",
         "idp.oidc.server.xǁEngineǁ_new_refresh_token*", "idp.oidc.server.xǁEngineǁrevoke_grant*"),
        ("idp.oidc.server.xǁEngineǁuse_refresh_token__mutmut_1",
         "idp.oidc.server.xǁEngineǁuse_refresh_token__mutmut_3",
         "idp.oidc.server.xǁEngineǁuse_refresh_token__mutmut_4",
         "idp.oidc.server.xǁEngineǁuse_refresh_token__mutmut_53",
         "idp.oidc.server.xǁEngineǁ_new_refresh_token__mutmut_2",
         "idp.oidc.server.xǁEngineǁ_new_refresh_token__mutmut_3",
         "idp.oidc.server.xǁEngineǁrevoke_grants__mutmut_7",
         "idp.oidc.server.xǁEngineǁrevoke_grants__mutmut_15"),
    ),
    "redirect": Target(
        ("idp/core/client_metadata.py", "idp/oidc/clients.py"),
        ("tests/oidc/test_redirect_uri_rules.py", "tests/oidc/test_authorization_endpoint.py",
         "tests/oidc/test_oidc_boundaries.py"),
        ("idp.core.client_metadata.x_uri_problem*", "idp.core.client_metadata.x_is_loopback*",
         "idp.oidc.clients.xǁOAuthClientǁcheck_redirect_uri*"),
        ("idp.oidc.clients.xǁOAuthClientǁcheck_redirect_uri__mutmut_5",
         "idp.oidc.clients.xǁOAuthClientǁcheck_redirect_uri__mutmut_24",
         "idp.oidc.clients.xǁOAuthClientǁcheck_redirect_uri__mutmut_29"),
    ),
    "csrf": Target(
        ("idp/web/admin/guard.py", "idp/web/login.py", "idp/web/webauthn.py"),
        ("tests/test_csrf_checks.py",),
        ("idp.web.admin.guard.x__check_csrf__mutmut_*", "idp.web.login.x__csrf_valid__mutmut_*",
         "idp.web.login.x__plainly_valid__mutmut_*", "idp.web.webauthn.x__guard__mutmut_*"),
        ("idp.web.admin.guard.x__check_csrf__mutmut_8",
         "idp.web.admin.guard.x__check_csrf__mutmut_9",
         "idp.web.login.x__plainly_valid__mutmut_5", "idp.web.login.x__plainly_valid__mutmut_7",
         "idp.web.webauthn.x__guard__mutmut_4", "idp.web.webauthn.x__guard__mutmut_5",
         "idp.web.webauthn.x__guard__mutmut_19", "idp.web.webauthn.x__guard__mutmut_21",
         "idp.web.webauthn.x__guard__mutmut_23", "idp.web.webauthn.x__guard__mutmut_24",
         "idp.web.webauthn.x__guard__mutmut_25"),
    ),
    "saml_inbound": Target(
        ("idp/saml/inbound.py", "idp/saml/validate.py"),
        ("tests/flows/test_saml_inbound_mutants.py",),
        ("idp.saml.inbound.x_utc_instant*", "idp.saml.inbound.x__b64*",
         "idp.saml.inbound.x_decode_redirect*", "idp.saml.inbound.x_decode_post*",
         "idp.saml.inbound.x_check_signature_algorithms*", "idp.saml.inbound.x_inspect*",
         "idp.saml.validate.x_unsafe_location*", "idp.saml.validate.x_read_message*",
         "idp.saml.validate.x_error_relay_state*", "idp.saml.validate.x_check_signature*",
         "idp.saml.validate.x_check_destination*", "idp.saml.validate.x_check_time*",
         "idp.saml.validate.x_remember_id*", "idp.saml.validate.x_choose_acs*",
         "idp.saml.validate.x__acs_location*", "idp.saml.validate.x__as_index*",
         "idp.saml.validate.x_parse_from_sp*", "idp.saml.validate.x__known_sender*",
         "idp.saml.validate.x__authn_request_fields*",
         "idp.saml.validate.x_check_authn_request*"),
        ("idp.saml.inbound.x_decode_post__mutmut_3", "idp.saml.inbound.x_decode_post__mutmut_4",
         "idp.saml.inbound.x_decode_post__mutmut_5", "idp.saml.inbound.x_decode_post__mutmut_6",
         "idp.saml.inbound.x_decode_post__mutmut_7",
         "idp.saml.inbound.x_decode_redirect__mutmut_13",
         "idp.saml.inbound.x_inspect__mutmut_21",
         "idp.saml.inbound.x_inspect__mutmut_27", "idp.saml.inbound.x_inspect__mutmut_30",
         "idp.saml.inbound.x_inspect__mutmut_31", "idp.saml.inbound.x_inspect__mutmut_32",
         "idp.saml.inbound.x_inspect__mutmut_33", "idp.saml.inbound.x_inspect__mutmut_36",
         "idp.saml.inbound.x_inspect__mutmut_44", "idp.saml.inbound.x_utc_instant__mutmut_4",
         "idp.saml.validate.x__acs_location__mutmut_46",
         "idp.saml.validate.x__acs_location__mutmut_48",
         "idp.saml.validate.x__acs_location__mutmut_51",
         "idp.saml.validate.x_parse_from_sp__mutmut_10",
         "idp.saml.validate.x_parse_from_sp__mutmut_37",
         "idp.saml.validate.x_remember_id__mutmut_17", "idp.saml.validate.x_remember_id__mutmut_22",
         "idp.saml.validate.x_check_authn_request__mutmut_100",
         "idp.saml.validate.x_check_authn_request__mutmut_104",
         "idp.saml.validate.x_check_authn_request__mutmut_105"),
    ),
}


def _table(values: dict) -> str:
    """A TOML table body of strings, numbers, booleans and lists of strings (JSON spells those
    the way TOML does)."""
    return "".join(f"{key} = {json.dumps(value, ensure_ascii=False)}\n"
                   for key, value in values.items())


def shared_settings() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]


def prepare(name: str, work: Path = WORK) -> Path:
    """The work directory of a target, its pyproject.toml narrowed to it."""
    target = TARGETS[name]
    here = work / name
    here.mkdir(parents=True, exist_ok=True)
    for entry in LINKED:
        link = here / entry
        if not link.exists():
            link.symlink_to(ROOT / entry)
    settings = dict(shared_settings())
    settings["only_mutate"] = list(target.files)
    settings["pytest_add_cli_args_test_selection"] = list(target.tests)
    ours = (ROOT / "pyproject.toml").read_text()
    # Drop our [tool.mutmut] table (up to the next table header) and append the narrowed one.
    narrowed = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[)", "", ours)
    (here / "pyproject.toml").write_text(narrowed + "\n[tool.mutmut]\n" + _table(settings))
    return here


def counts(name: str, work: Path = WORK) -> dict[str, int]:
    """Mutants of the target by outcome, from mutmut's own records (``*.meta``)."""
    from mutmut.stats import status_by_exit_code

    target = TARGETS[name]
    found: dict[str, int] = {}
    for file in target.files:
        meta = work / name / "mutants" / (file + ".meta")
        if not meta.is_file():
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for key, code in codes.items():
            if target.functions and not any(fnmatch(key, g) for g in target.functions):
                continue
            outcome = status_by_exit_code[code]
            if outcome == "survived" and key in target.equivalent:
                outcome = "equivalent"
            found[outcome] = found.get(outcome, 0) + 1
    return found


def survivors(name: str, work: Path = WORK) -> list[str]:
    """The target's surviving mutants that are not listed as equivalent."""
    from mutmut.stats import status_by_exit_code

    target = TARGETS[name]
    found = []
    for file in target.files:
        meta = work / name / "mutants" / (file + ".meta")
        if meta.is_file():
            codes = json.loads(meta.read_text())["exit_code_by_key"]
            found += [key for key, code in codes.items()
                      if status_by_exit_code[code] in ("survived", "no tests")
                      and key not in target.equivalent
                      and (not target.functions
                           or any(fnmatch(key, g) for g in target.functions))]
    return sorted(found)


def kill_rate(found: dict[str, int]) -> float:
    """Killed (a timeout is a kill: the test run did not pass) over every mutant that has
    tests and is not a listed equivalent one; mutants no test reaches count against the
    rate."""
    killed = found.get("killed", 0) + found.get("timeout", 0)
    judged = killed + found.get("survived", 0) + found.get("no tests", 0)
    return killed / judged if judged else 0.0


def run(name: str, max_children: int = 2, timeout: float | None = None,
        work: Path = WORK) -> dict[str, int]:
    here = prepare(name, work)
    mutmut = Path(sys.executable).with_name("mutmut")
    with open(here / "mutmut.log", "w") as log:  # mutmut's progress, read when a run fails
        subprocess.run(
            [str(mutmut), "run", "--max-children", str(max_children), *TARGETS[name].functions],
            cwd=here, check=False, timeout=timeout, stdout=log, stderr=subprocess.STDOUT,
            # tests/oidc/oidc_support.py then copies one initialised instance per process.
            env={**os.environ, "IDP_TEST_INSTANCE_TEMPLATE": "1"},
        )
    return counts(name, work)


def main(argv: list[str]) -> int:
    names = list(TARGETS) if argv[:1] == ["all"] else argv[:1]
    children = int(argv[argv.index("--max-children") + 1]) if "--max-children" in argv else 2
    for name in names:
        found = run(name, children)
        print(f"{name}: {kill_rate(found):.0%} killed {json.dumps(found, sort_keys=True)}")
        for key in survivors(name):
            print(f"  survived: {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
