"""SAML Web SSO responses per second for a user who already has an SSO session, our IdP
(`idp serve --workers 2`) beside SimpleSAMLphp (../shared/bench/peers/saml-simplesamlphp/,
started with its setup.sh on port 3902), in the same run, rounds alternating.

Each flow: pysaml2 (as the SP) builds an AuthnRequest (HTTP-Redirect) -> GET the IdP's SSO URL
with the session cookie -> the IdP answers with its HTTP-POST form holding the signed
SAMLResponse. Both IdPs sign Response and Assertion with RSA-SHA256. After each window a sample
of the responses is validated by pysaml2 (signatures, audience, InResponseTo), so a fast wrong
answer does not count. Load is bounded in time (--duration) and count (--max-flows).
Each window also reports the server's CPU time per response (its processes only, from /proc:
for SimpleSAMLphp the php-fpm and nginx masters named by --ssp-pidfile and their workers) and
the clients' CPU per flow, so a busy machine skews throughput, not those figures. Our IdP runs
in the default embedded deployment (SQLite database and store); --redis-url puts its store on
Redis.

    .venv/bin/python bench/bench_saml.py --duration 15 --rounds 3 --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from html import unescape
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SSP_METADATA = "http://127.0.0.1:3902/simplesaml/saml2/idp/metadata.php"
# The SP SimpleSAMLphp's bench config trusts; we register the same one.
SP_ENTITY = "http://127.0.0.1:3903/sp"
SP_ACS = "http://127.0.0.1:3903/acs/post"
USER, PASSWORD = "student", "studentpass"
# php-fpm and nginx masters started by the peer's setup.sh (their workers are their children).
SSP_PIDFILES = ["/run/php/ssp-bench-fpm.pid", "/run/nginx-ssp-bench.pid"]

INPUT_RE = re.compile(r"<input\b[^>]*>", re.I | re.S)
ATTR_RE = re.compile(r'([a-zA-Z_:-]+)\s*=\s*"([^"]*)"', re.S)
FORM_RE = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.I | re.S)


def forms(text):
    out = []
    for fm in FORM_RE.finditer(text):
        attrs = {k.lower(): unescape(v) for k, v in ATTR_RE.findall(fm.group(1))}
        fields = {}
        for im in INPUT_RE.finditer(fm.group(2)):
            a = {k.lower(): unescape(v) for k, v in ATTR_RE.findall(im.group(0))}
            if "name" in a:
                fields[a["name"]] = a.get("value", "")
        out.append((attrs.get("action", ""), fields))
    return out


def form_with(text, field):
    for action, fields in forms(text):
        if field in fields:
            return action, fields
    return None, None


def sp_client(md_file: str):
    from saml2 import BINDING_HTTP_POST
    from saml2.client import Saml2Client
    from saml2.config import SPConfig

    conf = SPConfig()
    conf.load(
        {
            "entityid": SP_ENTITY,
            "xmlsec_binary": "/usr/bin/xmlsec1",
            "service": {
                "sp": {
                    "endpoints": {"assertion_consumer_service": [(SP_ACS, BINDING_HTTP_POST)]},
                    "authn_requests_signed": False,
                    "want_response_signed": True,
                    "want_assertions_signed": True,
                    "allow_unsolicited": False,
                }
            },
            "metadata": {"local": [md_file]},
            "accepted_time_diff": 10,
            "allow_unknown_attributes": True,
        }
    )
    return Saml2Client(config=conf)


def worker(args):
    target, md_file, idp_entity, cookie, start_at, deadline, max_flows, keep = args
    from saml2 import BINDING_HTTP_REDIRECT

    client = sp_client(md_file)
    http = requests.Session()
    if cookie:
        http.cookies.set("idp_session", cookie, domain="127.0.0.1", path="/")
        # One flow before the clock starts, as the login warms SimpleSAMLphp's workers.
        _, info = client.prepare_for_authenticate(
            entityid=idp_entity, binding=BINDING_HTTP_REDIRECT
        )
        http.get(dict(info["headers"])["Location"], timeout=60)
    else:  # SimpleSAMLphp: log in once through its form
        _, info = client.prepare_for_authenticate(
            entityid=idp_entity, binding=BINDING_HTTP_REDIRECT
        )
        r = http.get(dict(info["headers"])["Location"], timeout=30)
        action, fields = form_with(r.text, "password")
        fields.update(username=USER, password=PASSWORD)
        r = http.post(urllib.parse.urljoin(r.url, action), data=fields, timeout=30)
        if form_with(r.text, "SAMLResponse")[1] is None:
            return {"count": 0, "errors": 1, "samples": [], "error": "login failed"}
    while time.time() < start_at:
        time.sleep(0.001)
    count = errors = 0
    samples = []
    cpu0 = time.process_time()
    while time.time() < deadline and count < max_flows:
        reqid, info = client.prepare_for_authenticate(
            entityid=idp_entity, relay_state="bench", binding=BINDING_HTTP_REDIRECT
        )
        r = http.get(dict(info["headers"])["Location"], timeout=30)
        action, fields = form_with(r.text, "SAMLResponse")
        if fields is None or action != SP_ACS:
            errors += 1
            continue
        count += 1
        if len(samples) < keep:
            samples.append((reqid, fields["SAMLResponse"]))
    return {
        "count": count,
        "errors": errors,
        "samples": samples,
        "cpu": time.process_time() - cpu0,
    }


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


def ssp_pids(pidfiles: list[str]) -> list[int]:
    out = []
    for f in pidfiles:
        try:
            out.append(int(Path(f).read_text().strip()))
        except (OSError, ValueError):
            pass
    return out


def run_window(
    target, md_file, idp_entity, cookies, duration, concurrency, max_flows, keep, server_pids
):
    start_at = time.time() + 8.0  # every worker has logged in / set up before the clock starts
    deadline = start_at + duration
    jobs = [
        (
            target,
            md_file,
            idp_entity,
            cookies[i] if cookies else None,
            start_at,
            deadline,
            max_flows // concurrency,
            keep,
        )
        for i in range(concurrency)
    ]
    with mp.Pool(concurrency) as pool:
        pending = pool.map_async(worker, jobs)
        # Server CPU is sampled over the timed window only (not the workers' set-up).
        time.sleep(max(0.0, start_at - time.time()))
        cpu_start = tree_cpu(server_pids) if server_pids else None
        time.sleep(max(0.0, deadline - time.time()))
        cpu_end = tree_cpu(server_pids) if server_pids else None
        results = pending.get()
    count = sum(r["count"] for r in results)
    errors = sum(r["errors"] for r in results)
    samples = [s for r in results for s in r["samples"]]
    validated = validate(md_file, samples)
    return {
        "target": target,
        "responses_per_s": round(count / duration, 1),
        "responses": count,
        "errors": errors,
        "validated": validated,
        "sampled": len(samples),
        "server_cpu_ms_per_response": round((cpu_end - cpu_start) * 1000 / count, 2)
        if count and cpu_start is not None
        else None,
        "client_cpu_ms_per_response": round(sum(r["cpu"] for r in results) * 1000 / count, 2)
        if count
        else None,
    }


def validate(md_file, samples):
    from saml2 import BINDING_HTTP_POST

    client = sp_client(md_file)
    ok = 0
    for reqid, resp in samples:
        parsed = client.parse_authn_request_response(
            resp, BINDING_HTTP_POST, outstanding={reqid: "bench"}
        )
        if parsed is not None and parsed.assertion is not None:
            ok += 1
    return ok


def fetch_metadata(url, folder, name):
    r = requests.get(url, timeout=10)
    r.raise_for_status()
    path = Path(folder) / f"{name}-idp.xml"
    path.write_text(r.text)
    return str(path), re.search(r'entityID="([^"]+)"', r.text).group(1)


def start_idp(folder: Path, port: int, redis_url: str = ""):
    env = dict(os.environ)
    env.update(
        IDP_INSTANCE_DIR=str(folder / "instance"),
        IDP_ISSUER=f"http://127.0.0.1:{port}",
        IDP_LOGGING_ACCESS_LOG="false",
        IDP_LOGGING_LEVEL="WARNING",
        # Empty: the default embedded deployment (SQLite database and store).
        IDP_REDIS_URL=redis_url,
        IDP_STORE_REDIS_PREFIX=f"bench-saml-{os.getpid()}:",
    )
    idp = [str(ROOT / ".venv" / "bin" / "idp")]
    subprocess.run(
        [*idp, "init", "--admin-password", "bench-admin-password", "--json"],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *idp,
            "users",
            "create",
            "--username",
            USER,
            "--email",
            "student@example.org",
            "--password",
            PASSWORD,
            "--given-name",
            "Test",
            "--family-name",
            "Student",
            "--json",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    sp_md = folder / "sp.xml"
    sp_md.write_text(
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'entityID="{SP_ENTITY}"><md:SPSSODescriptor '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</md:NameIDFormat>"
        '<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
        f'Location="{SP_ACS}" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>'
    )
    subprocess.run(
        [*idp, "saml", "sp", "add", "--metadata", str(sp_md), "--json"],
        env=env,
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [*idp, "serve", "--workers", "2", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "serve.log").open("wb"),
    )
    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server, env
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("idp serve did not become ready")


def drop_redis_keys(url: str, prefix: str) -> None:
    """Remove what this run left in Redis (sessions live for hours)."""
    import redis

    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=prefix + "*", count=1000))
    for i in range(0, len(keys), 500):
        r.delete(*keys[i : i + 500])


def make_sessions(env, n):
    """SSO sessions for the bench user, created through the IdP's own session manager."""
    code = (
        "import json,sys\n"
        "from idp.services import build_services\nfrom idp.settings import load_settings\n"
        "from idp.web.sso import SessionManager\nfrom idp.storage.directory import Directory\n"
        "svc=build_services(load_settings())\n"
        "with svc.sessions() as db: u=Directory(db).user_by_username('student').uuid\n"
        "m=SessionManager(svc)\n"
        f"print(json.dumps([m.create(u,['pwd'],'urn:idp:acr:1fa').sid for _ in range({n})]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def _median(values) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-flows", type=int, default=50000)
    ap.add_argument("--validate", type=int, default=10, help="responses kept per worker")
    ap.add_argument("--port", type=int, default=5077)
    ap.add_argument("--ssp-metadata", default=SSP_METADATA)
    ap.add_argument(
        "--ssp-pidfile",
        action="append",
        default=None,
        help="pid files of SimpleSAMLphp's server masters (for its CPU per response)",
    )
    ap.add_argument(
        "--redis-url",
        default="",
        help="run our IdP with its short-lived store on Redis (default: embedded, SQLite)",
    )
    ap.add_argument("--skip-ssp", action="store_true")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()

    ssp_pidfiles = args.ssp_pidfile or SSP_PIDFILES
    # Imported before the worker pools fork, so no window's set-up pays for it (the first
    # window would otherwise compete with eight imports of pysaml2).
    import saml2.client  # noqa: F401
    import saml2.config  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="bench-saml-") as tmp:
        folder = Path(tmp)
        server, env = start_idp(folder, args.port, args.redis_url)
        try:
            ours = fetch_metadata(f"http://127.0.0.1:{args.port}/saml/metadata", folder, "idp")
            cookies = make_sessions(env, args.concurrency)
            theirs = None if args.skip_ssp else fetch_metadata(args.ssp_metadata, folder, "ssp")
            runs = []
            for rnd in range(args.rounds):
                targets = [("idp", ours, cookies, [server.pid])]
                if theirs:
                    targets.append(("simplesamlphp", theirs, None, ssp_pids(ssp_pidfiles)))
                if rnd % 2:
                    targets.reverse()
                for name, (md_file, entity), cks, pids in targets:
                    res = run_window(
                        name,
                        md_file,
                        entity,
                        cks,
                        args.duration,
                        args.concurrency,
                        args.max_flows,
                        args.validate,
                        pids,
                    )
                    res["round"] = rnd
                    runs.append(res)
                    print(json.dumps(res), flush=True)
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
            if args.redis_url:
                drop_redis_keys(args.redis_url, env["IDP_STORE_REDIS_PREFIX"])
    summary = {}
    for name in {r["target"] for r in runs}:
        rates = [r["responses_per_s"] for r in runs if r["target"] == name]
        summary[name] = {
            "median_responses_per_s": statistics.median(rates),
            "rounds": rates,
            "errors": sum(r["errors"] for r in runs if r["target"] == name),
            "median_server_cpu_ms_per_response": _median(
                r["server_cpu_ms_per_response"] for r in runs if r["target"] == name
            ),
            "median_client_cpu_ms_per_response": _median(
                r["client_cpu_ms_per_response"] for r in runs if r["target"] == name
            ),
            "validated": f"{sum(r['validated'] for r in runs if r['target'] == name)}/"
            f"{sum(r['sampled'] for r in runs if r['target'] == name)}",
        }
    if "idp" in summary and "simplesamlphp" in summary:
        summary["ratio_idp_over_simplesamlphp"] = round(
            summary["idp"]["median_responses_per_s"]
            / max(summary["simplesamlphp"]["median_responses_per_s"], 0.1),
            2,
        )
    print(json.dumps(summary, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
