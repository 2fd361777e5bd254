"""A real OpenLDAP server for tests: its own cn=config in a temp dir, loopback ports, TLS.

The configuration LDIF is loaded with ``slapadd -n0``; the directory (users, nested groups, a
disabled user) is loaded from an LDIF with ``ldapadd`` once slapd runs, so the memberof overlay
computes ``memberOf`` as in production. The service account is not the rootDN, so the size
limit (5 entries) applies to it and a sync only gets everything through paged results.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret"
SERVICE_DN = f"cn=idp,ou=service,{SUFFIX}"
SERVICE_PW = "service-secret"
SIZE_LIMIT = 5
# Bulk users so that a sync needs several pages (more than SIZE_LIMIT entries in all).
BULK_USERS = 12
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw"}

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SLAPADD = shutil.which("slapadd") or "/usr/sbin/slapadd"
LDAPADD = shutil.which("ldapadd") or "/usr/bin/ldapadd"
LDAPWHOAMI = shutil.which("ldapwhoami") or "/usr/bin/ldapwhoami"


def available() -> bool:
    return all(Path(p).exists() for p in (SLAPD, SLAPADD, LDAPADD))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - LDAP {SSHA} format
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


# --- a test PKI ---------------------------------------------------------------------------------


@dataclass
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path
    other_ca_file: Path  # a CA that did not sign the server certificate


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("IdP test CA")
    _, other_cert = _ca("Some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pki = Pki(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "other-ca.pem",
    )
    pki.ca_file.write_bytes(ca_cert.public_bytes(pem))
    pki.other_ca_file.write_bytes(other_cert.public_bytes(pem))
    pki.cert_file.write_bytes(cert.public_bytes(pem))
    pki.key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pki


# --- LDIF (long values are folded: a continuation line starts with one space) ---------------

AD_LIKE_SCHEMA = """dn: cn=adlike,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: adlike
olcAttributeTypes: ( 1.3.6.1.4.1.55555.1.1 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcAttributeTypes: ( 1.3.6.1.4.1.55555.1.2 NAME 'userPrincipalName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcAttributeTypes: ( 1.3.6.1.4.1.55555.1.3 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
olcObjectClasses: ( 1.3.6.1.4.1.55555.2.1 NAME 'adLikeUser' SUP top AUXILIARY
  MAY ( sAMAccountName $ userPrincipalName $ userAccountControl ) )
"""


def config_ldif(d: Path, pki: Pki) -> str:
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {d}/slapd.pid
olcArgsFile: {d}/slapd.args
olcTLSCACertificateFile: {pki.ca_file}
olcTLSCertificateFile: {pki.cert_file}
olcTLSCertificateKeyFile: {pki.key_file}
olcAllows: bind_anon_dn

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: memberof
olcModuleLoad: refint

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/inetorgperson.ldif

{AD_LIKE_SCHEMA}
dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {d}/data
olcSuffix: {SUFFIX}
olcRootDN: {ROOT_DN}
olcRootPW: {ROOT_PW}
olcSizeLimit: size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} size.prtotal=unlimited
olcDbIndex: objectClass eq
olcDbIndex: uid,cn,mail,sAMAccountName,userPrincipalName eq
olcDbIndex: member,memberOf eq
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by dn.exact="{SERVICE_DN}" read by self read by * none

dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {{0}}memberof
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf

dn: olcOverlay={{1}}refint,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcRefintConfig
olcOverlay: {{1}}refint
olcRefintAttribute: member
"""


BASE_LDIF = f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: ou=service,{SUFFIX}
objectClass: organizationalUnit
ou: service

dn: {SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: idp
userPassword: {ssha(SERVICE_PW)}
"""


def user_dn(uid: str) -> str:
    return f"uid={uid},ou=people,{SUFFIX}"


def group_dn(cn: str) -> str:
    return f"cn={cn},ou=groups,{SUFFIX}"


def user_ldif(uid: str, password: str, given: str, family: str, disabled: bool = False) -> str:
    return f"""dn: {user_dn(uid)}
objectClass: inetOrgPerson
objectClass: adLikeUser
uid: {uid}
cn: {given} {family}
givenName: {given}
sn: {family}
mail: {uid}@example.org
sAMAccountName: {uid}
userPrincipalName: {uid}@corp.example.org
userAccountControl: {514 if disabled else 512}
userPassword: {ssha(password)}
"""


def group_ldif(cn: str, members: list[str]) -> str:
    lines = [f"dn: {group_dn(cn)}", "objectClass: groupOfNames", f"cn: {cn}"]
    lines += [f"member: {m}" for m in members]
    return "\n".join(lines) + "\n"


def seed_ldif() -> str:
    """alice -> developers -> backend -> engineering (nested); bob -> ops; carol is disabled."""
    users = [
        user_ldif("alice", PASSWORDS["alice"], "Alice", "Liddell"),
        user_ldif("bob", PASSWORDS["bob"], "Bob", "Builder"),
        user_ldif("carol", PASSWORDS["carol"], "Carol", "Danvers", disabled=True),
        user_ldif("dave", PASSWORDS["dave"], "Dave", "Bowman"),
    ]
    users += [
        user_ldif(f"user{i:03d}", f"pw-{i:03d}", "Bulk", f"User{i:03d}")
        for i in range(1, BULK_USERS + 1)
    ]
    groups = [
        group_ldif("developers", [user_dn("alice"), user_dn("carol")]),
        group_ldif("backend", [group_dn("developers")]),
        group_ldif("engineering", [group_dn("backend"), user_dn("dave")]),
        group_ldif("ops", [user_dn("bob")]),
    ]
    return "\n".join(users + groups)


# --- the server ---------------------------------------------------------------------------------


class Slapd:
    def __init__(self, directory: Path, pki: Pki) -> None:
        self.dir = directory
        self.pki = pki
        self.port = free_port()
        self.tls_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "slapd.log"

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def setup(self) -> None:
        (self.dir / "slapd.d").mkdir(parents=True)
        (self.dir / "data").mkdir()
        for name, text, db in (
            ("config", config_ldif(self.dir, self.pki), "0"),
            ("base", BASE_LDIF, "1"),
        ):
            path = self.dir / f"{name}.ldif"
            path.write_text(text)
            subprocess.run(
                [SLAPADD, "-n", db, "-F", str(self.dir / "slapd.d"), "-l", str(path)],
                check=True,
                capture_output=True,
            )

    def start(self) -> None:
        # 127.0.0.2 is loopback too but not in the certificate: the host-name check must fail.
        urls = f"{self.url}/ {self.ldaps_url}/ ldaps://127.0.0.2:{self.tls_port}/"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [SLAPD, "-d", "0", "-F", str(self.dir / "slapd.d"), "-h", urls],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not start listening")

    def ldapadd(self, ldif: str) -> None:
        path = self.dir / "add.ldif"
        path.write_text(ldif)
        subprocess.run(
            [LDAPADD, "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW, "-f", str(path)],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def admin(self):
        """An ldap3 connection bound as the rootDN, to change the directory from a test."""
        from ldap3 import Connection, Server

        return Connection(Server("127.0.0.1", port=self.port), ROOT_DN, ROOT_PW, auto_bind=True)


def start_slapd(directory: Path, pki: Pki) -> Slapd:
    server = Slapd(directory, pki)
    server.setup()
    server.start()
    server.ldapadd(seed_ldif())
    return server
