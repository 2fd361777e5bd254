"""Shared by the benchmarks that can drive the server with `wrk` (Debian package `wrk`) and a
Lua script under bench/wrk/ instead of Python clients: finding wrk, choosing the client mode,
running one bounded wrk window, and the server's CPU time from /proc.

wrk's own CPU is small (measured 0.07-0.14 ms per SAML response, ~0.3 ms per two-request login)
next to a Python client's (1.4-3.4 ms per flow), and the clients run on the same cores as the
server, so wrk skews a throughput ratio less.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from pathlib import Path

WRK_DIR = Path(__file__).resolve().parent / "wrk"
RESULT_TAG = "WRK_RESULT "


def wrk_path() -> str | None:
    return shutil.which("wrk")


def client_modes(choice: str | None) -> list[str]:
    """``--client`` to the modes to run: the default is wrk when it is installed, else python."""
    have = wrk_path() is not None
    if choice is None:
        choice = "wrk" if have else "python"
        why = "wrk found" if have else "wrk not found (apt-get install -y wrk)"
        print(f"client: {choice} (default: {why})", flush=True)
    else:
        print(f"client: {choice}", flush=True)
    if choice in ("wrk", "both") and not have:
        raise SystemExit("--client wrk needs wrk: apt-get install -y wrk")
    return ["python", "wrk"] if choice == "both" else [choice]


def run_wrk(
    script: str,
    url: str,
    *,
    threads: int,
    connections: int,
    duration: float,
    timeout: float,
    script_args: list[str],
    limit: float,
) -> dict:
    """One wrk window, bounded by ``-d duration`` (and killed after ``limit`` seconds).

    Returns the counts the Lua ``done()`` printed as one ``WRK_RESULT {json}`` line, plus
    ``client_cpu_s``: wrk's own CPU time (user + system), from the rusage of the reaped child.
    """
    cmd = [
        wrk_path() or "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={max(1, round(timeout))}s",
        "-s",
        str(WRK_DIR / script),
        url,
        "--",
        *script_args,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise SystemExit(f"wrk did not finish within {limit:.0f}s") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in out.splitlines() if ln.startswith(RESULT_TAG)), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({proc.returncode}): {(err or out).strip()[-800:]}")
    result = json.loads(line[len(RESULT_TAG) :])
    result["client_cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds (user + system) used so far by the processes ``roots`` and their
    descendants, from /proc (Linux): the server's cost, whatever else runs on the machine."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parent[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    wanted = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    return sum(ticks.get(pid, 0) for pid in wanted) / os.sysconf("SC_CLK_TCK")
