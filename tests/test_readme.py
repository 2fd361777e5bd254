"""The README keeps its promises: exactly two Quickstart commands (the run command is run
verbatim here, the test command by .ci/run), a configuration reference that lists every
setting, a Containerfile with the parts the README names, a Documentation list at the end."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()

RUN_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/idp init --demo "
    "&& .venv/bin/idp serve"
)
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"


def fenced_after(marker: str, text: str = README) -> list[str]:
    """The lines of the fenced block that follows ``<!-- marker -->``."""
    match = re.search(rf"<!-- {re.escape(marker)} -->\s*\n```[a-z]*\n(.*?)\n```", text, re.S)
    assert match, f"README.md has no fenced block after <!-- {marker} -->"
    return match.group(1).splitlines()


def test_quickstart_has_exactly_the_two_commands():
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)\n```", quickstart, re.S)
    assert blocks == [RUN_COMMAND, TEST_COMMAND]
    assert fenced_after("quickstart:run") == [RUN_COMMAND]
    assert fenced_after("quickstart:test") == [TEST_COMMAND]
    assert "3.11" in quickstart and "python3-venv" in quickstart


def test_configuration_reference_lists_every_setting():
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import gen_config_reference as gen
    finally:
        sys.path.pop(0)
    defaults = tomllib.loads((REPO / "config" / "defaults.toml").read_text())
    missing = []
    for key, value in defaults.items():
        pairs = [(f"{key}.{k}", f"IDP_{key}_{k}") for k in value] if isinstance(value, dict) else []
        pairs = pairs or [(key, f"IDP_{key}")]
        for name, env in pairs:
            row = f"| `{name}` | `{env.upper()}` |"
            if row not in README:
                missing.append(name)
    assert not missing, (
        f"README.md's configuration reference lacks {missing}: "
        "run .venv/bin/python docs/gen_config_reference.py"
    )
    assert gen.replaced(README) == README, (
        "README.md's configuration reference is out of date with config/defaults.toml: "
        "run .venv/bin/python docs/gen_config_reference.py"
    )
    for line in README.splitlines():
        if line.startswith("| `") and "IDP_" in line:
            assert not line.rstrip().endswith("|  |"), f"setting without a meaning: {line}"


def test_every_default_has_a_comment():
    """The defaults file is the documentation: every key has a comment above it (or shares
    the one of the group it is in)."""
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import gen_config_reference as gen
    finally:
        sys.path.pop(0)
    notes = gen.comments((REPO / "config" / "defaults.toml").read_text())
    assert notes and all(notes.values()), [k for k, v in notes.items() if not v]


def test_sections_the_issue_asks_for():
    for heading in (
        "## Quickstart",
        "## Configuration",
        "## PostgreSQL and Redis",
        "## Several nodes behind a load balancer",
        "## Container",
        "## Security notes",
    ):
        assert heading in README, heading
    nodes = README.split("## Several nodes", 1)[1].split("\n## ", 1)[0]
    for needed in ("IDP_SECRET_KEY", "IDP_KEYS_ENCRYPTION_KEY", "TRUSTED_PROXIES", "Sticky"):
        assert needed in nodes, needed
    for audience in ("Relying applications", "End users", "Administrators", "Partners"):
        assert audience in README


def test_documentation_list_is_last_and_links_resolve():
    headings = re.findall(r"^## (.+)$", README, re.M)
    assert headings[-1] == "Documentation"
    section = README.split("## Documentation", 1)[1]
    links = re.findall(r"\]\(([^)]+)\)", section)
    assert "docs/configuration.md" in links and "docs/deployment.md" in links
    for link in links:
        if not link.startswith("http"):
            assert (REPO / link).is_file(), f"README links to missing {link}"


def test_containerfile_names_its_parts():
    text = (REPO / "Containerfile").read_text()
    assert re.search(r"^FROM python:3\.1[1-9]-slim", text, re.M)
    assert re.search(r"apt-get install[^\n]*\\?\s*[^\n]*xmlsec1", text)
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert "pip install --no-cache-dir ." in text
    assert "IDP_INSTANCE_DIR=/var/lib/idp" in text
    assert 'VOLUME ["/var/lib/idp"]' in text
    assert re.search(r"^HEALTHCHECK .*\n?.*urllib\.request.*?/healthz", text, re.M)
    assert "curl" not in text
    assert 'ENTRYPOINT ["idp"]' in text and 'CMD ["serve", "--host", "0.0.0.0"]' in text


# --- .ci/run runs the README's test command verbatim ----------------------------------------------


def run_ci_with(tmp_path: Path, command: str) -> subprocess.CompletedProcess:
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "README.md").write_text(
        f"# x\n\n<!-- quickstart:run -->\n```sh\necho run\n```\n\n"
        f"<!-- quickstart:test -->\n```sh\n{command}\n```\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True, text=True
    )


def test_ci_run_is_strict_bash():
    text = (REPO / ".ci" / "run").read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(REPO / ".ci" / "run", os.X_OK)
    for package in ("xmlsec1", "slapd", "chromium", "redis-server", "postgresql-client", "wrk"):
        assert package in text
    assert "pg_ctlcluster --skip-systemctl-redirect" in text
    assert "IDP_TEST_DATABASE_URL" in text and "IDP_TEST_REDIS_URL" in text


def test_ci_run_runs_the_readme_test_command_verbatim(tmp_path):
    proc = run_ci_with(tmp_path, 'echo "verbatim $((6 * 7))" && pwd')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == ["verbatim 42", str(tmp_path)]


def test_ci_run_fails_when_pytest_collects_nothing(tmp_path):
    proc = run_ci_with(tmp_path, "exit 5")
    assert proc.returncode == 1
    assert "collected no tests" in proc.stderr


def test_ci_run_passes_failures_through(tmp_path):
    proc = run_ci_with(tmp_path, "true && false")
    assert proc.returncode == 1


# --- the run command, verbatim, in a clean copy ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


Rule = tuple[str, bool, bool, bool, str]  # (base dir, negated, directory only, anchored, pattern)


def _ignore_rules(root: Path, base: str) -> list[Rule]:
    """The rules of ``{base}.gitignore``: the subset of gitignore(5) this tree uses (``*`` globs,
    a trailing ``/`` for directories, ``!`` to re-include, a ``/`` inside the pattern to anchor it
    at the file's directory). Tools write their own (``.hypothesis/.gitignore`` is ``*``)."""
    path = root / base / ".gitignore"
    rules = []
    for raw in path.read_text().splitlines() if path.is_file() else []:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.removeprefix("!")
        dir_only = line.endswith("/")
        line = line.strip("/")
        rules.append((base, negated, dir_only, "/" in line, line))
    return rules


def _ignored(rel: str, is_dir: bool, rules: list[Rule]) -> bool:
    verdict = False
    for base, negated, dir_only, anchored, pattern in rules:
        if (dir_only and not is_dir) or not rel.startswith(base):
            continue
        inner = rel[len(base) :]
        name = inner if anchored else inner.rsplit("/", 1)[-1]
        if fnmatch.fnmatchcase(name, pattern):
            verdict = not negated
    return verdict


def _walk_tree(root: Path) -> list[str]:
    """The files of a copy of the tree without git (a ZIP download, a ``git archive`` export),
    with the same exclusions as ``git ls-files --cached --others --exclude-standard``."""
    found = []
    rules_in: dict[str, list[Rule]] = {}
    for here, dirs, files in os.walk(root):
        base = Path(here).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        parent = prefix.rstrip("/").rpartition("/")[0]
        parent = parent + "/" if parent else ""
        rules = rules_in.get(parent, []) if prefix else []
        rules = rules + _ignore_rules(root, prefix)
        rules_in[prefix] = rules
        dirs[:] = sorted(d for d in dirs if d != ".git" and not _ignored(prefix + d, True, rules))
        found += [
            prefix + f for f in files if f != ".git" and not _ignored(prefix + f, False, rules)
        ]
    return sorted(found)


def source_files(root: Path) -> list[str]:
    """The project's files under ``root`` (relative paths): what git tracks or would track in a
    clone, the same list walked from disk in a copy that is no git work tree."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
        )
    except OSError:  # no git on this machine
        return _walk_tree(root)
    inside = (root / ".git").exists() and listed.returncode == 0
    if not inside:  # not a git work tree (or, above it, someone else's)
        return _walk_tree(root)
    names = (os.fsdecode(n) for n in listed.stdout.split(b"\0") if n)
    return sorted(n for n in names if (root / n).is_file())


def _copy_checkout(dest: Path) -> None:
    for name in source_files(REPO):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)


@pytest.mark.slow
def test_readme_run_command_verbatim_in_a_clean_copy(tmp_path):
    """Installs from PyPI into a fresh venv exactly as a newcomer would (needs the network)."""
    checkout = tmp_path / "idp"
    _copy_checkout(checkout)
    assert not (checkout / ".venv").exists() and not (checkout / "instance").exists()
    port = _free_port()
    # A newcomer's shell: none of our settings, venv or import path (the tests may run with
    # PYTHONPATH pointing at an unpacked tree).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IDP_", "VIRTUAL_ENV")) and k != "PYTHONPATH"
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO))
    )
    # Configuration, not a change to the command: a free port, so nothing else is disturbed.
    env.update(IDP_SERVER_PORT=str(port), IDP_ISSUER=f"http://127.0.0.1:{port}")
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", RUN_COMMAND],
            cwd=checkout,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 900
            ready = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                    if ready.status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(1)
            text = log.read_text()
            assert ready is not None and ready.status_code == 200, text[-3000:]
            admin = re.search(r"^Administrator: admin / (\S+)$", text, re.M)
            assert admin and len(admin.group(1)) >= 12, text[-3000:]
            assert re.search(r"^Demo user: demo / \S+$", text, re.M)
            assert f"http://127.0.0.1:{port}/.well-known/openid-configuration" in text
            discovery = f"http://127.0.0.1:{port}/.well-known/openid-configuration"
            doc = requests.get(discovery, timeout=5).json()
            assert doc["issuer"] == f"http://127.0.0.1:{port}"
            python = checkout / ".venv" / "bin" / "python"
            where = subprocess.run(
                [str(python), "-c", "import idp; print(idp.__file__)"],
                capture_output=True,
                text=True,
                cwd=tmp_path,
                env=env,
                check=True,
            ).stdout
            assert "/.venv/lib/" in where  # a real (non-editable) install
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


# --- the tests run from any copy of the tree, not only a git clone --------------------------------

_JUNK = [  # what a developer's copy holds besides the sources, all excluded by .gitignore
    ".venv/bin/python",
    "instance/idp.db",
    "idp/__pycache__/app.cpython-311.pyc",
    "tests/stray.pyc",
    ".pytest_cache/v/cache/lastfailed",
    "dist/idp-0.1.0.tar.gz",
    "idp.egg-info/PKG-INFO",
    "keys/dev-signing.pem",
    ".coverage",
]


def _export(dest: Path) -> list[str]:
    """A copy of the tree as a ZIP download gives it: no .git, plus a developer's junk."""
    files = source_files(REPO)
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    for name in _JUNK:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text("junk")
    return files


def test_source_files_of_this_tree():
    files = source_files(REPO)
    for needed in (
        "README.md",
        ".gitignore",
        "idp/app.py",
        "keys/README.md",
        "tests/test_readme.py",
    ):
        assert needed in files
    assert not [f for f in files if f.startswith((".git/", ".venv/", "instance/"))]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    if (REPO / ".git").exists() and shutil.which("git"):
        # In a clone, walking the disk gives exactly what git lists.
        assert _walk_tree(REPO) == files


def test_source_files_of_a_copy_without_git(tmp_path, monkeypatch):
    """A ZIP download or `git archive` export: not a work tree, and perhaps no git at all."""
    copy = tmp_path / "idp-main"
    expected = _export(copy)
    assert not (copy / ".git").exists()
    assert source_files(copy) == expected
    # The copy sits inside someone else's git repository: their index is not ours.
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, capture_output=True)
        assert source_files(copy) == expected
    # No git program on the machine at all.
    empty = tmp_path / "no-git-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert source_files(copy) == expected
    # And the copy made from the copy for the run command is the same tree again.
    monkeypatch.setattr(sys.modules[__name__], "REPO", copy)
    again = tmp_path / "again"
    _copy_checkout(again)
    assert (
        sorted(p.relative_to(again).as_posix() for p in again.rglob("*") if p.is_file()) == expected
    )


def test_not_built_yet_names_only_what_is_missing(make_app):
    """The README's "Not built yet" line names no part that exists: every path it lists answers
    404, none of the built second factors and not the admin console is among them."""
    from idp.core.steps import factors

    line = re.search(r"^Not built yet.*?(?=\n\n)", README, re.S | re.M)
    assert line, "README.md has no 'Not built yet' paragraph"
    text = line.group(0)
    paths = re.findall(r"`(/[^`]*)`", text)
    app = make_app()
    client = app.test_client()
    for path in paths:
        assert client.get(path).status_code == 404, path
    built = set(factors(app.extensions["idp"]))
    assert {"totp", "backup", "email", "sms", "webauthn"} <= built
    for word in ("TOTP", "WebAuthn", "e-mail", "SMS", "second factor", "MFA", "admin"):
        assert word not in text, f"README says {word} is not built"
    assert "(TOTP)" in README and "(WebAuthn)" in README and "docs/mfa.md" in README
