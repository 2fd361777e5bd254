"""Soak (issue 22): mixed load against `idp serve --workers 2` on PostgreSQL + Redis for
``IDP_SOAK_SECONDS`` (default 600).

Four client threads (requests; modest, the suite shares two cores in CI) loop over a mix:
password sign-in through the hosted pages, the client_credentials grant, the authorization-code
grant with PKCE for a browser that holds an SSO session, the refresh grant (rotating), SAML Web
SSO (an AuthnRequest built by pysaml2 as the SP, answered from the SSO session) and the admin
API (list users, create a user). Every answer must have the expected status: no 5xx, no 4xx.

Every ``SAMPLE_SECONDS`` a sampler reads the PSS of the server's process tree
(/proc/<pid>/smaps_rollup), the backends of the IdP's database (pg_stat_activity) and the
Redis clients whose address is a socket of the server's processes (CLIENT LIST). After the
warm-up (a fifth of the run, at most two minutes) the PSS may grow by less than 10 % to the end,
the connection counts stay within the pools and do not creep; at the end `idp audit verify`
exits 0 and a sample of SAML responses verifies with pysaml2.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections import Counter
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import secret_watch
from support import require

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

SECONDS = float(os.environ.get("IDP_SOAK_SECONDS", "600"))
WARMUP = min(120.0, SECONDS / 5)
SAMPLE_SECONDS = 5.0
THREADS = 4
PAUSE = 0.05  # seconds each client thread waits between two operations
PASSWORD = "Soak-Long-Enough-Passw0rd"
REDIRECT = "http://127.0.0.1:9/cb"
SP_ENTITY = "http://127.0.0.1:9/sp"
SP_ACS = "http://127.0.0.1:9/acs/post"
WORKERS = 2
POOL = 5 + 10  # [database] pool_size + max_overflow, per worker process
REDIS_PER_WORKER = 8  # redis-py opens one connection per thread that waits on Redis at once
MAX_GROWTH = 0.10
REDIRECTS = (302, 303)
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
FORM = re.compile(r'<form method="post" action="([^"]+)" id="saml-post"')
SAML_RESPONSE = re.compile(r'name="SAMLResponse"[^>]*value="([^"]+)"')


# --- the server's process tree -------------------------------------------------------------


def tree_pids(pid: int) -> list[int]:
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out += tree_pids(int(child))
    return out


def pss_kib(pid: int) -> int:
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def tcp_ports(pid: int) -> set[int]:
    """Local ports of the TCP sockets the process tree holds."""
    inodes = set()
    for p in tree_pids(pid):
        try:
            fds = os.listdir(f"/proc/{p}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{p}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


# --- the served IdP ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    from fault_kit import Served
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin_url = os.environ.get("IDP_TEST_DATABASE_URL", "")
    redis_url = os.environ.get("IDP_TEST_REDIS_URL", "")
    require(admin_url.startswith("postgresql"), "IDP_TEST_DATABASE_URL (PostgreSQL) is not set")
    require(redis_url.startswith("redis"), "IDP_TEST_REDIS_URL is not set")
    name = f"idp_soak_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    prefix = f"soak-{secrets.token_hex(4)}:"
    workdir = tmp_path_factory.mktemp("soak")
    served = Served(
        workdir,
        workers=WORKERS,
        IDP_DATABASE_URL=url,
        IDP_REDIS_URL=redis_url,
        IDP_STORE_REDIS_PREFIX=prefix,
        IDP_KEYS_ENCRYPTION_KEY=secrets.token_urlsafe(32),
    )
    secret_watch.watch_file(served.log_path)
    secret_watch.register(PASSWORD)
    try:
        served.idp("init", "--admin-password", PASSWORD)
        rp = served.idp_json(
            "clients",
            "create",
            "--client-id",
            "soak-rp",
            "--redirect-uri",
            REDIRECT,
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "refresh_token",
            "--scope",
            "openid profile email",
            "--first-party",
        )
        machine = served.idp_json(
            "clients",
            "create",
            "--client-id",
            "soak-admin",
            "--grant-type",
            "client_credentials",
            "--scope",
            "admin",
            "--role",
            "Administrator",
        )
        secret_watch.register(rp["client_secret"], machine["client_secret"])
        metadata = workdir / "sp.xml"
        metadata.write_text(
            '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
            f'entityID="{SP_ENTITY}"><md:SPSSODescriptor '
            'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
            "</md:NameIDFormat><md:AssertionConsumerService "
            'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
            f'Location="{SP_ACS}" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>'
        )
        served.idp("saml", "sp", "add", "--metadata", str(metadata), "--allow-http")
        served.start()
        (workdir / "idp.xml").write_text(
            requests.get(f"{served.base}/saml/metadata", timeout=30).text
        )
        served.secrets = {"rp": rp["client_secret"], "admin": machine["client_secret"]}
        # The load's users, through the admin API (one `idp` process each would be slower).
        token = requests.post(
            f"{served.base}/oauth2/token",
            timeout=30,
            auth=("soak-admin", machine["client_secret"]),
            data={"grant_type": "client_credentials", "scope": "admin"},
        )
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        secret_watch.register(token.json())
        for i in range(THREADS):
            made = requests.post(
                f"{served.base}/api/v1/users",
                headers=bearer,
                timeout=30,
                json={
                    "username": f"soak{i}",
                    "email": f"soak{i}@example.org",
                    "password": PASSWORD,
                },
            )
            assert made.status_code == 201, made.text
        served.db_name = name
        served.admin_engine = admin
        served.redis_url = redis_url
        yield served
    finally:
        served.stop()
        import redis

        store = redis.Redis.from_url(redis_url)
        keys = list(store.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 500):
            store.delete(*keys[i : i + 500])
        store.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- the load ------------------------------------------------------------------------------


class Unexpected(AssertionError):
    pass


def expect(resp: requests.Response, status: int | tuple[int, ...], what: str):
    if resp.status_code not in (status if isinstance(status, tuple) else (status,)):
        raise Unexpected(f"{what}: {resp.status_code} (wanted {status}) {resp.text[:200]!r}")
    return resp


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sp_client(idp_metadata: Path):
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
            "metadata": {"local": [str(idp_metadata)]},
            "accepted_time_diff": 30,
            "allow_unknown_attributes": True,
        }
    )
    return Saml2Client(config=conf)


class Client:
    """One load thread: its own user, browser (SSO session) and refresh token."""

    def __init__(self, served, index: int) -> None:
        self.base = served.base
        self.user = f"soak{index}"
        self.rp_secret = served.secrets["rp"]
        self.admin_secret = served.secrets["admin"]
        self.browser = requests.Session()
        self.refresh_token: str | None = None
        self.sp = sp_client(served.workdir / "idp.xml")
        self.saml_samples: list[tuple[str, str]] = []
        self.index = index
        self.created = 0

    def sign_in(self, browser: requests.Session) -> None:
        page = expect(browser.get(f"{self.base}/login", timeout=30), 200, "GET /login").text
        resp = browser.post(
            f"{self.base}/login",
            timeout=30,
            allow_redirects=False,
            data={
                "csrf_token": CSRF.search(page).group(1),
                "username": self.user,
                "password": PASSWORD,
            },
        )
        expect(resp, REDIRECTS, "POST /login")

    def op_login(self) -> None:
        """A fresh browser signs in through the hosted pages and opens its account page."""
        with requests.Session() as browser:
            self.sign_in(browser)
            expect(browser.get(f"{self.base}/account/", timeout=30), 200, "GET /account/")

    def op_client_credentials(self) -> str:
        resp = requests.post(
            f"{self.base}/oauth2/token",
            timeout=30,
            auth=("soak-admin", self.admin_secret),
            data={"grant_type": "client_credentials", "scope": "admin"},
        )
        token = expect(resp, 200, "client_credentials").json()["access_token"]
        secret_watch.register(token)
        return token

    def op_code(self) -> None:
        verifier, challenge = pkce()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": "soak-rp",
                "redirect_uri": REDIRECT,
                "scope": "openid profile email",
                "state": secrets.token_hex(8),
                "nonce": secrets.token_hex(8),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        resp = self.browser.get(
            f"{self.base}/oauth2/authorize?{query}", timeout=30, allow_redirects=False
        )
        if resp.status_code in REDIRECTS and resp.headers["Location"].startswith("/login"):
            self.sign_in(self.browser)  # the first time: the browser signs in once
            resp = self.browser.get(
                f"{self.base}/oauth2/authorize?{query}", timeout=30, allow_redirects=False
            )
        expect(resp, REDIRECTS, "authorize")
        location = resp.headers["Location"]
        if not location.startswith(REDIRECT):
            raise Unexpected(f"authorize sent the browser to {location[:80]}")
        code = parse_qs(urlsplit(location).query)["code"][0]
        resp = requests.post(
            f"{self.base}/oauth2/token",
            timeout=30,
            auth=("soak-rp", self.rp_secret),
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
        )
        tokens = expect(resp, 200, "authorization_code").json()
        secret_watch.register(code, tokens)
        self.refresh_token = tokens["refresh_token"]

    def op_refresh(self) -> None:
        if self.refresh_token is None:
            self.op_code()
        resp = requests.post(
            f"{self.base}/oauth2/token",
            timeout=30,
            auth=("soak-rp", self.rp_secret),
            data={"grant_type": "refresh_token", "refresh_token": self.refresh_token},
        )
        tokens = expect(resp, 200, "refresh_token").json()
        secret_watch.register(tokens)
        self.refresh_token = tokens.get("refresh_token", self.refresh_token)

    def op_saml(self) -> None:
        from saml2 import BINDING_HTTP_REDIRECT

        if self.refresh_token is None:
            self.op_code()  # the browser holds an SSO session from here on
        reqid, info = self.sp.prepare_for_authenticate(
            relay_state="soak", binding=BINDING_HTTP_REDIRECT
        )
        resp = self.browser.get(dict(info["headers"])["Location"], timeout=30)
        expect(resp, 200, "SAML SSO")
        form, answer = FORM.search(resp.text), SAML_RESPONSE.search(resp.text)
        if not form or not answer or unescape(form.group(1)) != SP_ACS:
            raise Unexpected("SAML SSO answered without the POST form to the SP")
        # The latest few answers are checked at the end (an assertion lives minutes, the run
        # longer).
        self.saml_samples = [*self.saml_samples[-2:], (reqid, unescape(answer.group(1)))]

    def op_admin(self) -> None:
        token = self.op_client_credentials()
        headers = {"Authorization": f"Bearer {token}"}
        resp = requests.get(f"{self.base}/api/v1/users?per_page=25", headers=headers, timeout=30)
        if not expect(resp, 200, "GET /api/v1/users").json().get("items"):
            raise Unexpected("the admin API listed no user")
        self.created += 1
        name = f"made-{self.index}-{self.created}-{secrets.token_hex(3)}"
        resp = requests.post(
            f"{self.base}/api/v1/users",
            headers=headers,
            timeout=30,
            json={"username": name, "email": f"{name}@example.org"},
        )
        expect(resp, 201, "POST /api/v1/users")

    MIX = (
        ("login", 2),
        ("client_credentials", 3),
        ("code", 2),
        ("refresh", 3),
        ("saml", 3),
        ("admin", 2),
    )


def run_load(served, stop_at: float, counts: Counter, errors: list[str]) -> list[Client]:
    clients = [Client(served, i) for i in range(THREADS)]
    plan = [name for name, weight in Client.MIX for _ in range(weight)]
    lock = threading.Lock()

    def loop(client: Client, offset: int) -> None:
        n = offset
        while time.monotonic() < stop_at:
            name = plan[n % len(plan)]
            n += 1
            try:
                getattr(client, f"op_{name}")()
                outcome = name
            except Exception as exc:  # noqa: BLE001 (any failure is an unexpected answer)
                outcome = f"{name} failed"
                with lock:
                    errors.append(f"{time.strftime('%H:%M:%S')} {name}: {exc}"[:400])
            with lock:
                counts[outcome] += 1
            time.sleep(PAUSE)

    threads = [
        threading.Thread(target=loop, args=(c, i * 3), daemon=True) for i, c in enumerate(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, stop_at - time.monotonic()) + 120)
    return clients


def redis_clients(served, ports: set[int]) -> int:
    import redis

    store = redis.Redis.from_url(served.redis_url)
    try:
        listed = store.client_list()
    finally:
        store.close()
    return sum(1 for c in listed if int(c["addr"].rsplit(":", 1)[1]) in ports)


def pg_backends(served) -> int:
    from sqlalchemy import text

    with served.admin_engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :name "
                "AND pid <> pg_backend_pid()"
            ),
            {"name": served.db_name},
        ).scalar()


def test_soak_mixed_load_stays_correct_flat_and_bounded(soak):
    served = soak
    began = time.monotonic()
    stop_at = began + SECONDS
    counts: Counter = Counter()
    errors: list[str] = []
    samples: list[dict] = []
    done = threading.Event()

    def sampler() -> None:
        while not done.wait(SAMPLE_SECONDS):
            pid = served.proc.pid
            samples.append(
                {
                    "t": round(time.monotonic() - began, 1),
                    "pss_kib": pss_kib(pid),
                    "pg": pg_backends(served),
                    "redis": redis_clients(served, tcp_ports(pid)),
                    "ops": sum(counts.values()),
                }
            )

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    clients = run_load(served, stop_at, counts, errors)
    done.set()
    watcher.join(30)
    (served.workdir / "soak-samples.json").write_text(
        json.dumps({"counts": counts, "samples": samples, "errors": errors[:100]}, indent=1)
    )

    # Zero unexpected answers, and every kind of operation ran.
    assert not errors, f"{len(errors)} unexpected answers, first: {errors[:5]}"
    for name, _ in Client.MIX:
        assert counts[name] > 0, counts
    assert served.proc.poll() is None, "the server died during the soak"
    assert "Traceback" not in served.log(), "a stack trace in the server's log"

    # Memory flat after the warm-up: PSS of the whole tree (the master and both workers).
    after = [s for s in samples if s["t"] >= WARMUP]
    assert len(after) >= 4, samples
    start = sum(s["pss_kib"] for s in after[:2]) / 2
    end = sum(s["pss_kib"] for s in after[-2:]) / 2
    growth = (end - start) / start
    assert growth < MAX_GROWTH, (
        f"PSS grew {growth:.1%} after the warm-up ({start / 1024:.1f} -> {end / 1024:.1f} MiB)"
    )

    # No leaked connections: within the pools, and no creep after the warm-up.
    assert max(s["pg"] for s in samples) <= WORKERS * POOL, samples
    assert max(s["redis"] for s in samples) <= WORKERS * REDIS_PER_WORKER, samples
    warm_pg = (
        max(s["pg"] for s in samples if s["t"] < WARMUP)
        if samples[0]["t"] < WARMUP
        else after[0]["pg"]
    )
    warm_redis = (
        max(s["redis"] for s in samples if s["t"] < WARMUP)
        if samples[0]["t"] < WARMUP
        else after[0]["redis"]
    )
    assert after[-1]["pg"] <= max(warm_pg, after[0]["pg"]) + WORKERS, samples
    assert after[-1]["redis"] <= max(warm_redis, after[0]["redis"]) + WORKERS, samples
    assert after[-1]["pg"] >= 1 and after[-1]["redis"] >= 1, samples  # we measured something

    # A sample of the SAML answers verifies (signature, audience, InResponseTo).
    from saml2 import BINDING_HTTP_POST

    for client in clients[:2]:
        for reqid, answer in client.saml_samples[:2]:
            parsed = client.sp.parse_authn_request_response(
                answer, BINDING_HTTP_POST, outstanding={reqid: "soak"}
            )
            assert parsed.in_response_to == reqid

    # The audit chain still verifies after everything the load wrote.
    verified = served.idp("audit", "verify", check=False)
    assert verified.returncode == 0, verified.stderr
