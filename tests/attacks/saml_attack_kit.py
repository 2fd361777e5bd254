"""The SAML attack suite's tools: the signature-wrapping catalogue of Somorovsky et al., "On
Breaking SAML: Be Whoever You Want to Be" (USENIX Security 2012, XSW1-XSW8) as lxml
transformations of a genuinely signed message, hostile XML (XXE, entity expansion, deep
nesting, namespace tricks), a loopback listener that must receive nothing, and the two
targets: our IdP (a live server, a pysaml2 SP signing its requests) and our broker's SP side
(an upstream pysaml2 IdP signing the Responses posted to ``/broker/<alias>/saml/acs``)."""

from __future__ import annotations

import base64
import copy
import http.server
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxml import etree

_TESTS = Path(__file__).resolve().parent.parent
for _folder in (_TESTS, _TESTS / "flows", _TESTS / "broker"):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SP = "https://sp.example.org/metadata"
ACS = "https://sp.example.org/acs"


def now_instant() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deflate(xml: str | bytes) -> str:
    data = xml.encode() if isinstance(xml, str) else xml
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(c.compress(data) + c.flush()).decode()


def b64(xml: str | bytes) -> str:
    return base64.b64encode(xml.encode() if isinstance(xml, str) else xml).decode()


# --- the XSW catalogue ---------------------------------------------------------------------------


def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


def _parse(xml: str | bytes) -> etree._Element:
    return etree.fromstring(xml.encode() if isinstance(xml, str) else xml)


def _text(root: etree._Element) -> str:
    return etree.tostring(root).decode()


def _own_signature(el: etree._Element) -> etree._Element:
    sig = el.find(_q(DS, "Signature"))
    assert sig is not None, "the element is not signed"
    return sig


def _unsigned_copy(el: etree._Element) -> etree._Element:
    out = copy.deepcopy(el)
    sig = out.find(_q(DS, "Signature"))
    if sig is not None:
        out.remove(sig)
    return out


def _after_issuer(parent: etree._Element, child: etree._Element) -> None:
    """Put ``child`` where the schema expects the Signature: right after the Issuer."""
    issuer = parent.find(_q(SAML, "Issuer"))
    if issuer is not None:
        issuer.addnext(child)
    else:
        parent.insert(0, child)


def _object(child: etree._Element) -> etree._Element:
    obj = etree.Element(_q(DS, "Object"), nsmap={"ds": DS})
    obj.append(child)
    return obj


Mutate = Callable[[etree._Element], None]


def xsw_message(xml: str, variant: str, mutate: Mutate, *, new_id: str = "_evil") -> str:
    """A root-signed protocol message (AuthnRequest, LogoutRequest, Response) wrapped as
    XSW1 / XSW2 do: an evil root with the evil content ``mutate`` makes; the signature, whose
    Reference still names the original's ID, beside the original (unsigned copy) inside the
    Signature's ds:Object (XSW1) or before it as a detached sibling (XSW2)."""
    signed = _parse(xml)
    sig = _own_signature(signed)
    evil = _unsigned_copy(signed)
    evil.set("ID", new_id)
    mutate(evil)
    original = _unsigned_copy(signed)
    moved = copy.deepcopy(sig)
    if variant == "xsw1":
        moved.append(_object(original))
        _after_issuer(evil, moved)
    elif variant == "xsw2":
        _after_issuer(evil, moved)
        moved.addprevious(original)
    else:
        raise ValueError(variant)
    return _text(evil)


def xsw_request(xml: str, variant: str, mutate: Mutate) -> str:
    """The catalogue on a request, whose signed element is the root itself: XSW1 / XSW2 as on
    a Response; XSW3-XSW8, written for an Assertion inside a Response, become their request
    analogues (the signed request takes the Assertion's place, an evil request the
    Response's):

    - xsw3: the evil request (its own ID) holds the signed request, unchanged, as its first
      child after the Issuer;
    - xsw4: the same with the evil request taking the original's ID (a duplicate ID);
    - xsw5: the signed request's content changed under its signature, an unsigned copy of the
      original appended at its end;
    - xsw6: the same with the copy inside the Signature's ds:Object;
    - xsw7: the evil request carries the signed one in ``samlp:Extensions`` (the catalogue's
      less restrictive element; also the "assertion in Extensions" variant);
    - xsw8: the evil request carries the signature, the original copy in its ds:Object, and
      the same ID as the original.
    """
    if variant in ("xsw1", "xsw2"):
        return xsw_message(xml, variant, mutate)
    signed = _parse(xml)
    _own_signature(signed)
    if variant in ("xsw3", "xsw4", "xsw7"):
        evil = _unsigned_copy(signed)
        if variant != "xsw4":
            evil.set("ID", "_evil")
        mutate(evil)
        if variant == "xsw7":
            ext = evil.find(_q(SAMLP, "Extensions"))
            if ext is None:
                ext = etree.Element(_q(SAMLP, "Extensions"))
                _after_issuer(evil, ext)
            ext.append(signed)
        else:
            _after_issuer(evil, signed)
        return _text(evil)
    if variant in ("xsw5", "xsw6", "xsw8"):
        original = _unsigned_copy(signed)
        evil = signed  # keeps its signature (and its ID), content changed
        mutate(evil)
        if variant == "xsw5":
            evil.append(original)
        else:
            _own_signature(evil).append(_object(original))
        return _text(evil)
    raise ValueError(variant)


def xsw_assertion(xml: str, variant: str, mutate: Mutate) -> str:
    """XSW3-XSW8 on a Response whose Assertion is signed (``mutate`` changes the evil
    Assertion):

    - xsw3: an evil unsigned Assertion (another ID) before the signed one, both in the Response;
    - xsw4: the signed Assertion becomes a child of the evil one;
    - xsw5: the signed Assertion's content changed under its signature, an unsigned copy of the
      original appended at the end of the Response;
    - xsw6: the same with the copy inside the Signature's ds:Object;
    - xsw7: the evil Assertion inside a ``samlp:Extensions`` of the Response, the signed one
      in place;
    - xsw8: the evil Assertion carries the signature, the original (unsigned copy) inside a
      ds:Object of it.
    """
    root = _parse(xml)
    signed = root.find(_q(SAML, "Assertion"))
    assert signed is not None
    _own_signature(signed)
    if variant in ("xsw3", "xsw4", "xsw7"):
        evil = _unsigned_copy(signed)
        evil.set("ID", "_evil")
        mutate(evil)
        if variant == "xsw3":
            signed.addprevious(evil)
        elif variant == "xsw4":
            signed.addprevious(evil)
            evil.append(signed)
        else:
            ext = etree.Element(_q(SAMLP, "Extensions"))
            _after_issuer(root, ext)
            ext.append(evil)
        return _text(root)
    if variant in ("xsw5", "xsw6", "xsw8"):
        original = _unsigned_copy(signed)
        mutate(signed)
        if variant == "xsw5":
            root.append(original)
        elif variant == "xsw6":
            _own_signature(signed).append(_object(original))
        else:
            original.set("ID", "_orig-copy")
            _own_signature(signed).append(_object(original))
        return _text(root)
    raise ValueError(variant)


def set_name_id(value: str) -> Mutate:
    def mutate(el: etree._Element) -> None:
        for name_id in el.iter(_q(SAML, "NameID")):
            name_id.text = value

    return mutate


def set_attribute(name: str, value: str) -> Mutate:
    def mutate(el: etree._Element) -> None:
        el.set(name, value)

    return mutate


# --- hostile XML ---------------------------------------------------------------------------------


@dataclass
class Listener:
    """A loopback HTTP server counting every request it gets (an XXE must fetch nothing)."""

    url: str
    hits: list[str] = field(default_factory=list)


@contextmanager
def loopback_listener() -> Iterator[Listener]:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            hits.append(self.path)
            body = b'<!ENTITY % leak "x">'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Listener(f"http://127.0.0.1:{server.server_address[1]}", hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def xxe_prologs(listener_url: str) -> dict[str, tuple[str, str]]:
    """(DOCTYPE prolog, entity reference to put in a text node) per XXE form."""
    return {
        "external-entity-file": (
            "<!DOCTYPE r [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>",
            "&x;",
        ),
        "external-entity-http": (
            f"<!DOCTYPE r [<!ENTITY x SYSTEM '{listener_url}/entity'>]>",
            "&x;",
        ),
        "parameter-entity": (
            f"<!DOCTYPE r [<!ENTITY % p SYSTEM '{listener_url}/param.dtd'> %p;]>",
            "",
        ),
        "external-dtd": (f"<!DOCTYPE r SYSTEM '{listener_url}/external.dtd'>", ""),
        "public-dtd": (
            f"<!DOCTYPE r PUBLIC '-//evil//EN' '{listener_url}/public.dtd'>",
            "",
        ),
    }


def billion_laughs(levels: int = 10) -> tuple[str, str]:
    lines = ["<!ENTITY l0 'lol'>"]
    for i in range(1, levels):
        lines.append(f"<!ENTITY l{i} '{f'&l{i - 1};' * 10}'>")
    return f"<!DOCTYPE r [{''.join(lines)}]>", f"&l{levels - 1};"


def quadratic_blowup(size: int = 20_000, refs: int = 2_000) -> tuple[str, str]:
    return f"<!DOCTYPE r [<!ENTITY a '{'a' * size}'>]>", "&a;" * refs


def nested(depth: int, tag: str = "x") -> str:
    return f"<{tag}>" * depth + f"</{tag}>" * depth


def sign_root(xml: str, key_file: str) -> str:
    """``xml`` with an enveloped XML signature on its root (RSA-SHA256, exclusive c14n, a
    single Reference to the root's ID), put after the Issuer as saml-core 5.4 wants: what an
    SP signs a message with."""
    import xmlsec

    root = _parse(xml)
    xmlsec.tree.add_ids(root, ["ID"])
    sig = xmlsec.template.create(
        root, xmlsec.constants.TransformExclC14N, xmlsec.constants.TransformRsaSha256, ns="ds"
    )
    _after_issuer(root, sig)
    ref = xmlsec.template.add_reference(
        sig, xmlsec.constants.TransformSha256, uri="#" + root.get("ID")
    )
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_file(key_file, xmlsec.constants.KeyDataFormatPem)
    ctx.sign(sig)
    return _text(root)
