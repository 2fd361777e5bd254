"""A coverage-guided fuzz target (atheris, libFuzzer) for the inbound SAML reader: the first
byte picks the encoding (raw XML, HTTP-Redirect's base64 of DEFLATE, HTTP-POST's base64), the
rest is the message; ``saml_fuzz_kit.read_inbound`` decodes it, checks it
(``idp.saml.inbound.inspect``) and reads an unsigned AuthnRequest
(``idp.saml.authnrequest.read_unsigned``), as /saml/sso and /saml/slo do before any SP is
looked up. Only ``BadMessage`` may come out: any other exception is a crash, and libFuzzer
writes the input that caused it next to ``-artifact_prefix``.

Run it longer locally (docs/development.md, "Fuzzing"):

    mkdir -p corpus && .venv/bin/python tests/fuzz/fuzz_saml_inbound.py -max_total_time=3600 corpus/

tests/fuzz/test_atheris_saml_inbound.py runs it for a bounded time in the slow tier.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["idp.saml"]):
    from idp.saml import authnrequest, inbound  # noqa: F401 - instrumented before the kit

from saml_fuzz_kit import SAML, SAMLP, TYPED_ERRORS, deflate, read_inbound  # noqa: E402

_REQUEST = (
    f'<samlp:AuthnRequest xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="_a" Version="2.0" '
    'IssueInstant="2026-11-21T10:00:00Z" AssertionConsumerServiceIndex="3" ForceAuthn="1">'
    "<saml:Issuer>https://sp.example.org/metadata</saml:Issuer>"
    '<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient"/>'
    '<samlp:RequestedAuthnContext Comparison="minimum">'
    "<saml:AuthnContextClassRef>urn:idp:acr:2fa</saml:AuthnContextClassRef>"
    "</samlp:RequestedAuthnContext></samlp:AuthnRequest>"
).encode()
_LOGOUT = (
    f'<samlp:LogoutRequest xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="_l" Version="2.0" '
    'IssueInstant="2026-11-21T10:00:00Z"><saml:Issuer>https://sp.example.org/metadata'
    "</saml:Issuer><saml:NameID>x</saml:NameID>"
    "<samlp:SessionIndex>s</samlp:SessionIndex></samlp:LogoutRequest>"
).encode()


def seeds() -> list[bytes]:
    """A starting corpus: well-formed messages in each of the three encodings."""
    import base64

    out = []
    for xml in (_REQUEST, _LOGOUT):
        out += [b"\x00" + xml, b"\x01" + deflate(xml).encode(), b"\x02" + base64.b64encode(xml)]
    return out


def test_one_input(data: bytes) -> None:
    if not data:
        return
    try:
        read_inbound(data[1:], data[0] % 3)
    except TYPED_ERRORS:
        pass


def main() -> None:
    """libFuzzer's command line; an empty corpus directory is given the seeds first."""
    folders = [Path(a) for a in sys.argv[1:] if not a.startswith("-")]
    if folders and folders[0].is_dir() and not any(folders[0].iterdir()):
        for i, seed in enumerate(seeds()):
            (folders[0] / f"seed-{i}").write_bytes(seed)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
