"""The SCIM 2.0 calls the pusher makes (RFC 7644), every one through the outbound guard
(``idp.delivery.outbound``: https only and no private address unless ``[outbound]`` allows it,
pinned addresses, no redirects, bounded time and size).

Each answer is judged once, here, into what the pusher does next (:class:`PushError`):

- cannot connect, timeout, 5xx: try again later (``retry``); 429 and 503 carry their
  ``Retry-After`` (RFC 7644 §3.12 lets a service provider ask for it, RFC 9110 §10.2.3 says how);
- refused before connecting (scheme, address), 401/403 (the token), any other 4xx and an
  answer that is not SCIM JSON: trying again unchanged will not help, so the item fails with
  the reason, the service provider's ``detail`` included (RFC 7644 §3.12);
- 409 is the caller's to handle (a create of a user that exists: adopt it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from ..delivery.outbound import Outbound, OutboundError, OutboundRefused

SCIM_JSON = "application/scim+json"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
_MAX_DETAIL = 300


class PushError(Exception):
    """A call that failed: ``reason`` is short and safe to show (never the token)."""

    def __init__(
        self,
        reason: str,
        *,
        retry: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.retry_after = retry_after
        self.status = status


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header: delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        parts = [str(body.get(k)) for k in ("scimType", "detail") if body.get(k)]
        if parts:
            return ": " + " - ".join(parts)[:_MAX_DETAIL]
    return ""


def filter_eq(attribute: str, value: str) -> str:
    """``attribute eq "value"`` (RFC 7644 §3.4.2.2), the value a JSON string."""
    return f"{attribute} eq {json.dumps(value)}"


class ScimClient:
    """Calls to one target: ``base`` is its SCIM base URL (no trailing slash)."""

    def __init__(self, outbound: Outbound, base: str, token: str, now: float) -> None:
        self.outbound = outbound
        self.base = base.rstrip("/")
        self._token = token
        self._now = now

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> Reply:
        """One call; a 2xx or a status in ``ok`` is returned, anything else raises PushError."""
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": f"{SCIM_JSON}, application/json;q=0.9",
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = SCIM_JSON
        try:
            answer = self.outbound.request(method, self.base + path, body=data, headers=headers)
        except OutboundRefused as exc:
            raise PushError(f"refused: {exc.reason}") from None
        except OutboundError as exc:
            raise PushError(exc.reason, retry=True) from None
        parsed: Any = None
        if answer.body.strip():
            try:
                parsed = json.loads(answer.body)
            except ValueError:
                parsed = ValueError
        status = answer.status
        where = f"{method} {path.split('?', 1)[0]}"
        if status == 429 or status >= 500:
            wait = retry_after(answer.headers.get("retry-after"), self._now)
            raise PushError(
                f"{where}: HTTP {status}{_detail(parsed)}",
                retry=True,
                retry_after=wait if status in (429, 503) else None,
                status=status,
            )
        if not (200 <= status < 300 or status in ok):
            if status in (401, 403):
                reason = f"{where}: HTTP {status}, the target refused the token{_detail(parsed)}"
            else:
                reason = f"{where}: HTTP {status}{_detail(parsed)}"
            raise PushError(reason, status=status)
        if parsed is ValueError or (parsed is not None and not isinstance(parsed, dict)):
            raise PushError(f"{where}: the answer is not SCIM JSON", status=status)
        return Reply(status, parsed)

    def resource_id(self, reply: Reply, where: str) -> str:
        rid = reply.body.get("id") if isinstance(reply.body, dict) else None
        if not isinstance(rid, str) or not rid:
            raise PushError(f"{where}: the answer names no resource id")
        return rid

    def find(self, endpoint: str, attribute: str, value: str) -> str | None:
        """The id of the one resource whose ``attribute`` equals ``value`` (RFC 7644 §3.4.2)."""
        query = quote(filter_eq(attribute, value), safe="")
        reply = self.call("GET", f"/{endpoint}?filter={query}&count=2")
        found = (reply.body or {}).get("Resources") or []
        if not isinstance(found, list):
            raise PushError(f"GET /{endpoint}: the answer is not a SCIM list")
        if len(found) > 1:
            raise PushError(f"GET /{endpoint}: several resources have {attribute} {value!r}")
        if not found:
            return None
        return self.resource_id(Reply(200, found[0]), f"GET /{endpoint}")

    def patch_supported(self) -> bool:
        """What the target's ServiceProviderConfig says (RFC 7643 §5); unknown: yes."""
        try:
            reply = self.call("GET", "/ServiceProviderConfig")
        except PushError as exc:
            if exc.retry or exc.status in (401, 403):
                raise
            return True
        patch = (reply.body or {}).get("patch")
        return not (isinstance(patch, dict) and patch.get("supported") is False)


def patch_body(operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": operations}
