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

Two clients (--client wrk|python|both; the default is wrk when it is installed, else python):

- ``python``: --concurrency processes, each with requests and a pysaml2 SP building one
  AuthnRequest per flow (1.4-3.4 ms of client CPU per flow, on the same cores as the servers).
- ``wrk``: before each window, unique HTTP-Redirect AuthnRequest URLs are generated from one
  pysaml2-built request (new ID and IssueInstant per URL, raw deflate + base64 here: the SP's
  requests are unsigned, so a template is valid) -- enough for twice the best rate seen so far
  (first window: --rate-guess) times the duration times 1.5, never one reused. wrk
  (bench/wrk/saml_sso.lua) then sends them with one connection per thread, --concurrency
  threads, each thread its own slice of the URLs and its own SSO session: for our IdP one of
  the `idp_session` cookies made below per connection, for SimpleSAMLphp one login through its
  form per connection, its cookies sent as a Cookie header. A thread that runs out stops (and
  the window is run again once with three times the URLs); it never replays. The first
  --validate good bodies per thread are validated with pysaml2 as in python mode (outstanding
  = the generated request IDs). Client CPU is wrk's own (measured 0.07-0.14 ms per response).

Rounds alternate the order of targets (and client modes).

    .venv/bin/python bench/bench_saml.py --duration 15 --rounds 3 --concurrency 8
    .venv/bin/python bench/bench_saml.py --client both --duration 6 --rounds 2
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import multiprocessing as mp
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zlib
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from pathlib import Path

import requests
from wrkbench import client_modes, run_wrk, tree_cpu

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


def ssp_login(client, http: requests.Session, idp_entity: str) -> bool:
    """Log in to SimpleSAMLphp once through its form; the session cookies stay in ``http``."""
    from saml2 import BINDING_HTTP_REDIRECT

    _, info = client.prepare_for_authenticate(entityid=idp_entity, binding=BINDING_HTTP_REDIRECT)
    r = http.get(dict(info["headers"])["Location"], timeout=30)
    action, fields = form_with(r.text, "password")
    if fields is None:
        return False
    fields.update(username=USER, password=PASSWORD)
    r = http.post(urllib.parse.urljoin(r.url, action), data=fields, timeout=30)
    return form_with(r.text, "SAMLResponse")[1] is not None


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
    elif not ssp_login(client, http, idp_entity):  # SimpleSAMLphp: once through its form
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
        "client": "python",
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
        if reqid is None:  # not an answer to a request we sent
            continue
        try:
            parsed = client.parse_authn_request_response(
                resp, BINDING_HTTP_POST, outstanding={reqid: "bench"}
            )
        except Exception:  # pysaml2 raises many types; all mean "not valid"
            parsed = None
        if parsed is not None and parsed.assertion is not None:
            ok += 1
    return ok


class RedirectRequests:
    """Unique HTTP-Redirect AuthnRequest paths from one request built by pysaml2: the same XML
    with a new ID and IssueInstant, raw-deflated, base64'd and URL-encoded here (about 100x
    cheaper than pysaml2 per request). Valid because the SP's requests are unsigned."""

    def __init__(self, md_file: str, idp_entity: str):
        from saml2 import BINDING_HTTP_REDIRECT

        client = sp_client(md_file)
        reqid, info = client.prepare_for_authenticate(
            entityid=idp_entity, relay_state="bench", binding=BINDING_HTTP_REDIRECT
        )
        url = urllib.parse.urlsplit(dict(info["headers"])["Location"])
        query = urllib.parse.parse_qsl(url.query)
        self.origin = f"{url.scheme}://{url.netloc}"
        self.path = url.path
        self.extra = [(k, v) for k, v in query if k not in ("SAMLRequest", "RelayState")]
        xml = zlib.decompress(base64.b64decode(dict(query)["SAMLRequest"]), -15).decode()
        instant = re.search(r'\bIssueInstant="([^"]+)"', xml).group(1)
        template = xml.replace(f'ID="{reqid}"', 'ID="@@ID@@"', 1)
        template = template.replace(f'IssueInstant="{instant}"', 'IssueInstant="@@II@@"', 1)
        if template.count("@@ID@@") != 1 or template.count("@@II@@") != 1:
            raise SystemExit("cannot template pysaml2's AuthnRequest")
        self.template = template

    def batch(self, n: int) -> tuple[list[str], list[str]]:
        """``n`` request paths (with query) and their IDs, issued now."""
        instant = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        base = self.template.replace("@@II@@", instant)
        paths, ids = [], []
        for _ in range(n):
            reqid = "id-" + secrets.token_hex(10)
            packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            raw = packer.compress(base.replace("@@ID@@", reqid).encode()) + packer.flush()
            query = [
                *self.extra,
                ("SAMLRequest", base64.b64encode(raw).decode()),
                ("RelayState", "bench"),
            ]
            paths.append(f"{self.path}?{urllib.parse.urlencode(query)}")
            ids.append(reqid)
        return paths, ids


def wrk_samples(folder: Path, ids: set[str]) -> list[tuple[str | None, str]]:
    """The bodies wrk saved, as (the request ID it answers if we sent it, SAMLResponse)."""
    out = []
    for body in sorted(folder.glob("body.*.html")):
        action, fields = form_with(body.read_text(errors="replace"), "SAMLResponse")
        if fields is None or action != SP_ACS:
            out.append((None, ""))
            continue
        xml = base64.b64decode(fields["SAMLResponse"]).decode(errors="replace")
        m = re.search(r'\bInResponseTo="([^"]+)"', xml)
        out.append((m.group(1) if m and m.group(1) in ids else None, fields["SAMLResponse"]))
    return out


def run_wrk_window(
    target, md_file, idp_entity, cookies, duration, connections, n_urls, keep, server_pids, timeout
):
    """One timed window driven by wrk: one connection per wrk thread, each with its own SSO
    session (``cookies``: our IdP's idp_session values; None: log in to SimpleSAMLphp once per
    connection) and its own slice of ``n_urls`` never-reused AuthnRequest URLs."""
    factory = RedirectRequests(md_file, idp_entity)
    with tempfile.TemporaryDirectory(prefix="bench-saml-wrk-") as tmp:
        folder = Path(tmp)
        headers = []
        warm_urls = []
        for i in range(connections):
            with requests.Session() as http:
                if cookies:
                    headers.append(f"idp_session={cookies[i]}")
                    warm_urls.append((cookies[i], factory.batch(1)[0][0]))
                else:
                    if not ssp_login(sp_client(md_file), http, idp_entity):
                        raise SystemExit("SimpleSAMLphp login failed")
                    headers.append("; ".join(f"{c.name}={c.value}" for c in http.cookies))

        def warm(pair: tuple[str, str]) -> None:
            with requests.Session() as http:
                http.cookies.set("idp_session", pair[0], domain="127.0.0.1", path="/")
                http.get(factory.origin + pair[1], timeout=60)

        # One flow per session before the clock, as in python mode, all at once: every worker
        # gets some, so none loads the SAML libraries (on first use) inside the window.
        with ThreadPoolExecutor(max(1, len(warm_urls))) as pool:
            list(pool.map(warm, warm_urls))
        per_thread = math.ceil(n_urls / connections)
        ids: set[str] = set()
        gen_start = time.perf_counter()
        for i in range(connections):
            paths, got = factory.batch(per_thread)
            ids.update(got)
            (folder / f"urls.{i + 1}").write_text("\n".join(paths) + "\n")
            (folder / f"cookie.{i + 1}").write_text(headers[i] + "\n")
        gen_s = time.perf_counter() - gen_start
        cpu_start = tree_cpu(server_pids) if server_pids else None
        res = run_wrk(
            "saml_sso.lua",
            factory.origin,
            threads=connections,
            connections=connections,
            duration=duration,
            timeout=timeout,
            script_args=[str(folder), str(keep)],
            limit=duration + timeout + 60,
        )
        cpu_end = tree_cpu(server_pids) if server_pids else None
        samples = wrk_samples(folder, ids)
    validated = validate(md_file, samples)
    count = res["ok"]
    return {
        "target": target,
        "client": "wrk",
        "responses_per_s": round(count / res["duration_s"], 1),
        "responses": count,
        "errors": res["non200"] + res["noform"] + res["socket_errors"] + res["timeouts"],
        "non200": res["non200"],
        "no_saml_form": res["noform"],
        "validated": validated,
        "sampled": len(samples),
        "server_cpu_ms_per_response": round((cpu_end - cpu_start) * 1000 / count, 2)
        if count and cpu_start is not None
        else None,
        "client_cpu_ms_per_response": round(res["client_cpu_s"] * 1000 / count, 3)
        if count
        else None,
        "urls": per_thread * connections,
        "ran_out": bool(res["ran_out"]),
        "gen_ms_per_url": round(gen_s * 1000 / (per_thread * connections), 3),
        "p50_ms": res["p50_ms"],
        "p99_ms": res["p99_ms"],
    }


def fetch_metadata(url, folder, name):
    r = requests.get(url, timeout=10)
    r.raise_for_status()
    path = Path(folder) / f"{name}-idp.xml"
    path.write_text(r.text)
    return str(path), re.search(r'entityID="([^"]+)"', r.text).group(1)


def start_idp(folder: Path, port: int, redis_url: str = "", workers: int = 2, threads: int = 0):
    env = dict(os.environ)
    if threads:
        env["IDP_SERVER_THREADS"] = str(threads)
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
        # A loopback lab SP on plain http: registered with the lab flag.
        [*idp, "saml", "sp", "add", "--metadata", str(sp_md), "--allow-http", "--json"],
        env=env,
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [*idp, "serve", "--workers", str(workers), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "serve.log").open("wb"),
        start_new_session=True,  # its workers go with it (os.killpg)
    )
    for _ in range(300):
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server, env
        except requests.RequestException:
            pass
        time.sleep(0.2)
    os.killpg(server.pid, signal.SIGTERM)  # the server this script started, by its PID
    server.wait(30)
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
        "from idp.sso.sessions import SessionManager\nfrom idp.storage.directory import Directory\n"
        "svc=build_services(load_settings())\n"
        "with svc.sessions() as db: u=Directory(db).user_by_username('student').uuid\n"
        "m=SessionManager(svc)\n"
        f"print(json.dumps([m.create(u,['pwd'],'urn:idp:acr:1fa').cookie for _ in range({n})]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def _median(values) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def summarize(runs: list[dict], modes: list[str]) -> dict:
    summary: dict = {}
    for mode in modes:
        per: dict = {}
        for name in sorted({r["target"] for r in runs if r["client"] == mode}):
            sel = [r for r in runs if r["target"] == name and r["client"] == mode]
            rates = [r["responses_per_s"] for r in sel]
            per[name] = {
                "median_responses_per_s": statistics.median(rates),
                "rounds": rates,
                "errors": sum(r["errors"] for r in sel),
                "median_server_cpu_ms_per_response": _median(
                    r["server_cpu_ms_per_response"] for r in sel
                ),
                "median_client_cpu_ms_per_response": _median(
                    r["client_cpu_ms_per_response"] for r in sel
                ),
                "validated": f"{sum(r['validated'] for r in sel)}/{sum(r['sampled'] for r in sel)}",
            }
        if "idp" in per and "simplesamlphp" in per:
            per["ratio_idp_over_simplesamlphp"] = round(
                per["idp"]["median_responses_per_s"]
                / max(per["simplesamlphp"]["median_responses_per_s"], 0.1),
                2,
            )
            ours = per["idp"]["median_server_cpu_ms_per_response"]
            theirs = per["simplesamlphp"]["median_server_cpu_ms_per_response"]
            if ours and theirs:
                per["ratio_server_cpu_idp_over_simplesamlphp"] = round(ours / theirs, 2)
        summary[mode] = per
    return summary


def print_summary(summary: dict, rounds: int) -> None:
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    print(f"summary: medians over {rounds} rounds")
    print(
        f"{'client':7s} {'target':14s} {'responses/s':>11s} {'server ms/resp':>14s} "
        f"{'client ms/resp':>14s} {'validated':>10s} {'errors':>6s}"
    )
    for mode, per in summary.items():
        for name, row in per.items():
            if not isinstance(row, dict):
                continue
            print(
                f"{mode:7s} {name:14s} {row['median_responses_per_s']:11.1f} "
                f"{fmt(row['median_server_cpu_ms_per_response'], '14.2f')} "
                f"{fmt(row['median_client_cpu_ms_per_response'], '14.3f')} "
                f"{row['validated']:>10s} {row['errors']:6d}"
            )
    for mode, per in summary.items():
        if "ratio_idp_over_simplesamlphp" in per:
            print(
                f"{mode}: ours/SimpleSAMLphp responses/s = {per['ratio_idp_over_simplesamlphp']}"
                f", server CPU ms/response = "
                f"{per.get('ratio_server_cpu_idp_over_simplesamlphp', '-')}"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-flows", type=int, default=50000)
    ap.add_argument(
        "--validate", type=int, default=10, help="responses kept per worker / wrk thread"
    )
    ap.add_argument(
        "--port", type=int, default=0, help="our IdP's port (default: a free loopback port)"
    )
    ap.add_argument(
        "--client",
        choices=["wrk", "python", "both"],
        default=None,
        help="load generator (default: wrk when installed, else python)",
    )
    ap.add_argument(
        "--rate-guess",
        type=float,
        default=1000,
        help="responses/s assumed for a target's first wrk window (sizes the URL set)",
    )
    ap.add_argument("--wrk-timeout", type=float, default=10, help="wrk --timeout, seconds")
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
    ap.add_argument("--workers", type=int, default=2, help="idp serve --workers")
    ap.add_argument(
        "--server-threads", type=int, default=0, help="server.threads (default: the IdP's own)"
    )
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()

    modes = client_modes(args.client)
    if not args.port:  # a fixed default would collide with another run of a bench beside us
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            args.port = probe.getsockname()[1]
    ssp_pidfiles = args.ssp_pidfile or SSP_PIDFILES
    # Imported before the worker pools fork, so no window's set-up pays for it (the first
    # window would otherwise compete with eight imports of pysaml2).
    import saml2.client  # noqa: F401
    import saml2.config  # noqa: F401

    best_rate: dict[str, float] = {}  # per target, from wrk windows: sizes the next URL set
    with tempfile.TemporaryDirectory(prefix="bench-saml-") as tmp:
        folder = Path(tmp)
        server, env = start_idp(
            folder, args.port, args.redis_url, args.workers, args.server_threads
        )
        try:
            ours = fetch_metadata(f"http://127.0.0.1:{args.port}/saml/metadata", folder, "idp")
            cookies = make_sessions(env, args.concurrency)
            theirs = None if args.skip_ssp else fetch_metadata(args.ssp_metadata, folder, "ssp")
            runs = []
            for rnd in range(args.rounds):
                targets = [("idp", ours, cookies, [server.pid])]
                if theirs:
                    targets.append(("simplesamlphp", theirs, None, ssp_pids(ssp_pidfiles)))
                windows = [(t, mode) for t in targets for mode in modes]
                if rnd % 2:
                    windows.reverse()
                for (name, (md_file, entity), cks, pids), mode in windows:
                    if mode == "python":
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
                    else:
                        guess = max(args.rate_guess, 2 * best_rate.get(name, 0))
                        n_urls = min(args.max_flows, math.ceil(guess * args.duration * 1.5))
                        for attempt in range(2):
                            res = run_wrk_window(
                                name,
                                md_file,
                                entity,
                                cks,
                                args.duration,
                                args.concurrency,
                                n_urls,
                                args.validate,
                                pids,
                                args.wrk_timeout,
                            )
                            if not res["ran_out"] or n_urls >= args.max_flows or attempt:
                                break
                            print(f"  (wrk ran out of {n_urls} URLs: again with 3x)", flush=True)
                            n_urls = min(args.max_flows, n_urls * 3)
                        best_rate[name] = max(best_rate.get(name, 0), res["responses_per_s"])
                    res["round"] = rnd
                    runs.append(res)
                    print(json.dumps(res), flush=True)
        finally:
            os.killpg(server.pid, signal.SIGTERM)  # the server and its workers, by PID
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
            if args.redis_url:
                drop_redis_keys(args.redis_url, env["IDP_STORE_REDIS_PREFIX"])
    summary = summarize(runs, modes)
    print(json.dumps(summary, indent=2))
    print_summary(summary, args.rounds)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
