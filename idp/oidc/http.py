"""Plain request data: what the OIDC engine reads of an HTTP request, built by the web layer
(``idp.web.oidc.respond.plain_request``) or by a test, with no web framework involved; and
authlib's framework-neutral request objects built from it (RFC 6749 §3.1, §3.2 parameters)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import JsonPayload, JsonRequest, OAuth2Payload, OAuth2Request


class Headers(dict[str, str]):
    """Header names looked up in any case (RFC 9110 §5.1); a header sent several times is one
    value, joined by commas (§5.3), so that a check for "one header" sees the others."""

    def __init__(self, items: Mapping[str, str] | Any = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        super().__init__()
        for k, v in pairs:
            key = k.lower()
            super().__setitem__(key, f"{super().__getitem__(key)}, {v}" if key in self else v)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


class Values(Mapping[str, str]):
    """Parameters sent, each name with all its values: ``[name]`` and ``get`` give the first,
    ``getlist`` all of them (the reading authlib and our checks expect)."""

    __slots__ = ("lists",)

    def __init__(self, lists: Mapping[str, list[str]] | None = None) -> None:
        self.lists = lists or {}

    def __getitem__(self, key: str) -> str:
        return self.lists[key][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self.lists)

    def __len__(self) -> int:
        return len(self.lists)

    def getlist(self, key: str) -> list[str]:
        return list(self.lists.get(key, ()))


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One HTTP request as plain data. ``query`` and ``form``: each parameter name with its
    values in order; ``json``: the body parsed as JSON when it was sent as JSON, else None;
    ``content_type``: the media type without parameters."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    query: Mapping[str, list[str]] = field(default_factory=dict)
    form: Mapping[str, list[str]] = field(default_factory=dict)
    content_type: str = ""
    content_length: int | None = None
    json: Any = None
    remote_addr: str | None = None  # the client's address (for audit rows)
    request_id: str | None = None  # the request's id (for audit rows)
    # The client's TLS certificate as a trusted proxy passed it (RFC 8705; idp.web.proxies).
    client_cert: str | None = None

    @property
    def args(self) -> Values:
        return Values(self.query)

    @property
    def values(self) -> Values:
        """Query then form parameters, as one (a name in both: the query's values first); a
        GET has only its query (as Flask's ``request.values``)."""
        if not self.form or self.method == "GET":
            return Values(self.query)
        if not self.query:
            return Values(self.form)
        merged = {k: list(v) for k, v in self.query.items()}
        for k, v in self.form.items():
            merged.setdefault(k, []).extend(v)
        return Values(merged)

    def post_form(self) -> Values:
        return Values(self.form)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    @property
    def user_agent(self) -> str | None:
        return self.header("User-Agent") or None


class _Payload(OAuth2Payload):
    def __init__(self, values: Values) -> None:
        self._values = values

    @property
    def data(self) -> Values:
        return self._values

    @property
    def datalist(self) -> Mapping[str, list[str]]:
        return self._values.lists


class PlainOAuth2Request(OAuth2Request):
    """authlib's OAuth2Request over plain request data. At the token endpoint it carries
    what sender-constrains the tokens (``idp.oidc.sender``): the DPoP proof's key thumbprint
    and the client certificate's thumbprint."""

    dpop_jkt: str | None = None
    cert_thumbprint: str | None = None

    def __init__(self, req: HttpRequest) -> None:
        super().__init__(method=req.method, uri=req.uri, headers=req.headers)
        self._req = req
        self.payload = _Payload(req.values)

    @property
    def args(self) -> Values:
        return self._req.args

    @property
    def form(self) -> Values:
        return self._req.post_form()

    @property
    def remote_addr(self) -> str | None:
        return self._req.remote_addr

    @property
    def client_cert(self) -> str | None:
        """The client certificate a trusted proxy passed on (RFC 8705 §2 client auth)."""
        return self._req.client_cert

    @property
    def request_id(self) -> str | None:
        return self._req.request_id

    @property
    def user_agent(self) -> str | None:
        return self._req.user_agent


class _JsonPayload(JsonPayload):
    def __init__(self, data: Any) -> None:
        self._data = data

    @property
    def data(self) -> Any:
        return self._data


class PlainJsonRequest(JsonRequest):
    """authlib's JsonRequest over plain request data."""

    def __init__(self, req: HttpRequest) -> None:
        super().__init__(req.method, req.uri, req.headers)
        self.payload = _JsonPayload(req.json)


def request_stamp(request: Any) -> dict[str, str | None]:
    """The ip, user agent and request id of a token request (plain request data, or authlib's
    request over it) for its audit row; nothing for a request rebuilt without them."""
    return {"ip": getattr(request, "remote_addr", None),
            "user_agent": getattr(request, "user_agent", None),
            "request_id": getattr(request, "request_id", None)}
