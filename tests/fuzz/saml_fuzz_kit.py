"""What the SAML fuzz tests and the atheris target share: the one call that reads an inbound
message as the IdP does before any SP is looked up (``read_inbound``), the errors it may raise,
and a generator of hostile XML documents (random element trees in the SAML, XML-Signature and
foreign namespaces, attributes, comments, processing instructions, CDATA, character and entity
references, DTDs with internal and external entities, odd encodings)."""

from __future__ import annotations

import base64
import zlib

from hypothesis import strategies as st

from idp.saml.authnrequest import AuthnRequestFields, read_unsigned
from idp.saml.inbound import BadMessage, Inbound, decode_post, decode_redirect, inspect

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
# Text an entity of a generated DTD would expand to: it must never reach a parsed tree.
EXPANDED = "ENTITY-EXPANDED"
# The reader's typed error: everything else that comes out of it is a bug.
TYPED_ERRORS = (BadMessage,)


def read_inbound(data: bytes, mode: int = 0) -> tuple[Inbound, AuthnRequestFields | None]:
    """What /saml/sso and /saml/slo do with a message before any SP is looked up: decode it
    (``mode`` 1: HTTP-Redirect, 2: HTTP-POST, else the raw XML), check it (``inspect``), and
    read an unsigned AuthnRequest (``read_unsigned``). Raises only ``BadMessage``."""
    if mode == 1:
        data = decode_redirect(data.decode("latin-1"))
    elif mode == 2:
        data = decode_post(data.decode("latin-1"))
    msg = inspect(data)
    if msg.root_tag == "AuthnRequest" and not msg.has_signature:
        return msg, read_unsigned(msg.root)
    return msg, None


def deflate(xml: bytes) -> str:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(packer.compress(xml) + packer.flush()).decode()


# --- hostile documents ------------------------------------------------------------------------

_PREFIXES = {"samlp": SAMLP, "saml": SAML, "ds": DS, "x": "urn:x:foreign", "": None}
_NAMES = [
    "AuthnRequest",
    "LogoutRequest",
    "LogoutResponse",
    "Response",
    "Issuer",
    "NameID",
    "NameIDPolicy",
    "RequestedAuthnContext",
    "AuthnContextClassRef",
    "SessionIndex",
    "Extensions",
    "Signature",
    "SignedInfo",
    "Reference",
    "SignatureMethod",
    "DigestMethod",
    "SignatureValue",
    "Object",
    "Assertion",
    "Subject",
    "Conditions",
    "Scoping",
]
_ATTRS = [
    "ID",
    "Version",
    "IssueInstant",
    "Destination",
    "ForceAuthn",
    "IsPassive",
    "AssertionConsumerServiceURL",
    "AssertionConsumerServiceIndex",
    "AttributeConsumingServiceIndex",
    "ProtocolBinding",
    "Format",
    "AllowCreate",
    "Comparison",
    "Algorithm",
    "URI",
    "xml:lang",
    "x:evil",
    "xmlns:x",
]
# Mostly well-formed text (so that the readers behind the parser get their share), some hostile.
_PLAIN = st.text(
    st.characters(blacklist_characters="<&", blacklist_categories=["Cs", "Cc"]), max_size=16
)
_VALUES = st.sampled_from(
    [
        "2.0",
        "_r1",
        "_r1",
        "true",
        "1",
        "FALSE",
        "yes",
        "65535",
        "65536",
        "-1",
        "+2",
        "",
        "2026-11-21T10:00:00Z",
        "2026-13-01T00:00:00Z",
        "urn:x",
        "#_r1",
        "&amp;",
        "&lt;",
        "&#0;",
        "&#x1F600;",
        "&ent;",
        "&#xD800;",
        "<",
        '"',
        "urn:x:foreign",
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    ]
) | _PLAIN.map(lambda t: t.replace('"', "&quot;"))
_TEXT = st.one_of(
    *[_PLAIN] * 8,
    st.sampled_from(
        [
            "https://sp.example.org/metadata",
            " x ",
            "&ent;",
            "&amp;",
            "&#65;",
            "&#0;",
            "&#x110000;",
            "<!-- c -->",
            "<?pi x?>",
            "<![CDATA[<a>]]>",
            "]]>",
            "&",
            "<",
            "\x00",
            "\ufffe",
            "<!ENTITY y 'z'>",
            "&xxe;",
            "&lol9;",
        ]
    ),
    st.text(max_size=16),
)


def _tag(prefix: str, name: str) -> str:
    return f"{prefix}:{name}" if prefix else name


@st.composite
def _element(draw, depth: int = 0) -> str:
    prefix = draw(st.sampled_from(sorted(_PREFIXES)))
    name = draw(st.sampled_from(_NAMES) | st.from_regex(r"\A[A-Za-z_][\w.-]{0,6}\Z"))
    pairs = draw(st.dictionaries(st.sampled_from(_ATTRS), _VALUES, max_size=4))
    if draw(st.integers(0, 3)) == 0:  # a prefix bound again: signatures, issuers move
        bound = draw(st.sampled_from(["samlp", "saml", "ds", "x"]))
        pairs[f"xmlns:{bound}"] = draw(st.sampled_from([SAMLP, SAML, DS, "", "urn:x:other"]))
    attrs = "".join(f' {a}="{v}"' for a, v in pairs.items())
    kids = (
        draw(st.lists(st.deferred(lambda: _element(depth + 1)) | _TEXT, max_size=4))
        if depth < 4
        else draw(st.lists(_TEXT, max_size=2))
    )
    tag = _tag(prefix, name)
    if not kids and draw(st.booleans()):
        return f"<{tag}{attrs}/>"
    return f"<{tag}{attrs}>{''.join(kids)}</{tag}>"


_DTDS = [
    f'<!DOCTYPE r [<!ENTITY ent "{EXPANDED}">]>',
    '<!DOCTYPE r SYSTEM "file:///etc/passwd">',
    '<!doctype r [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>',
    f'<!DocType r [<!ENTITY % p "{EXPANDED}"> %p;]>',
    '<!DOCTYPE\nr [<!ENTITY lol "lol"><!ENTITY lol9 "&lol;&lol;&lol;&lol;&lol;&lol;">]>',
    f'<!ENTITY ent "{EXPANDED}">',
    '<!DOCTYPE r PUBLIC "-//x//y" "http://127.0.0.1:9/dtd">',
]
_DECLARATIONS = [
    "",
    '<?xml version="1.0"?>',
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<?xml version="1.0" encoding="UTF-16"?>',
    '<?xml version="1.0" encoding="ISO-8859-1"?>',
    '<?xml version="1.0" encoding="bogus"?>',
    '<?xml version="1.1"?>',
    '<?xml-stylesheet href="x"?>',
    "\ufeff",
]
_ENCODINGS = ["utf-8"] * 6 + ["utf-16", "utf-16-le", "latin-1", "utf-32"]


@st.composite
def hostile_documents(draw) -> tuple[bytes, bool]:
    """(document bytes, whether it carries a DTD or an entity declaration)."""
    root = draw(_element())
    if draw(st.integers(0, 3)):  # mostly inside a SAML protocol root: the readers' real work
        name = draw(st.sampled_from(["AuthnRequest", "LogoutRequest", "LogoutResponse"]))
        inner = root
        root = (
            f'<samlp:{name} xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" xmlns:ds="{DS}" '
            f'xmlns:x="urn:x:foreign" ID="_r1" Version="2.0" IssueInstant="2026-11-21T10:00:00Z">'
            f"<saml:Issuer>https://sp.example.org/metadata</saml:Issuer>{inner}</samlp:{name}>"
        )
    dtd = draw(st.none() | st.sampled_from(_DTDS))
    decl = draw(st.sampled_from(_DECLARATIONS))
    text = decl + (dtd or "") + draw(st.sampled_from(["", "\n", "<!-- lead -->"])) + root
    encoding = draw(st.sampled_from(_ENCODINGS))
    data = text.encode(encoding, errors="replace")
    cut = draw(st.none() | st.integers(0, max(0, len(data) - 1)))
    if cut is not None and draw(st.integers(0, 3)) == 0:
        data = data[:cut]
    if draw(st.integers(0, 4)) == 0:
        data += draw(st.binary(max_size=8))
    return data, dtd is not None
