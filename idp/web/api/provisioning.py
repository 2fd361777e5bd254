"""Outbound SCIM provisioning targets (docs/provisioning.md): ``/provisioning/targets`` (list,
create), ``/provisioning/targets/{id}`` (read, change, delete), its ``/status``, ``/retry``
and ``/full-sync``. The token is write-only: no answer ever carries it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ...provisioning import targets
from .common import ApiModel, Strict
from .framework import Call, Reply, operation
from .shapes import created, path_id

TAG = "provisioning"


class Mapping(Strict):
    userName: Literal["username", "email"] | None = Field(  # noqa: N815 - the SCIM name
        None, description="Where the target's userName comes from"
    )
    externalId: Literal["uuid", "external_id", "none"] | None = Field(  # noqa: N815
        None, description="Where the target's externalId comes from"
    )
    enterprise: bool | None = Field(None, description="Send the Enterprise User extension")


class TargetIn(Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    base_url: str | None = Field(
        None, min_length=1, max_length=targets.MAX_URL,
        description="The SCIM base URL (https; [outbound] decides which hosts may be reached)",
    )
    token: str | None = Field(
        None, min_length=1, max_length=targets.MAX_TOKEN, pattern=r"^[!-~](?:[ -~]*[!-~])?$",
        description="The bearer token for the target (write-only; printable ASCII)",
    )
    enabled: bool | None = None
    all_users: bool | None = Field(None, description="Push every user (else: groups' members)")
    groups: list[str] | None = Field(
        None, max_length=100, description="Paths of the groups whose members are pushed"
    )
    push_groups: bool | None = None
    mapping: Mapping | None = None

    def as_input(self) -> targets.TargetInput:
        data: dict[str, Any] = self.model_dump(exclude={"mapping"})
        if self.mapping is not None:
            data["mapping"] = self.mapping.model_dump(exclude_none=True)
        return targets.TargetInput(**data)


class NewTarget(TargetIn):
    """A new target: name, base URL and token are required (a change may leave them out)."""

    name: str = Field(min_length=1, max_length=100)
    base_url: str = Field(
        min_length=1, max_length=targets.MAX_URL,
        description="The SCIM base URL (https; [outbound] decides which hosts may be reached)",
    )
    token: str = Field(
        min_length=1, max_length=targets.MAX_TOKEN, pattern=r"^[!-~](?:[ -~]*[!-~])?$",
        description="The bearer token for the target (write-only; printable ASCII)",
    )


class TargetOut(ApiModel):
    id: int
    name: str
    base_url: str
    enabled: bool
    all_users: bool
    groups: list[str]
    push_groups: bool
    mapping: dict[str, Any]
    token_set: bool = Field(description="A token is stored (it is never shown)")
    last_success_at: str | None


class TargetList(ApiModel):
    items: list[TargetOut]


class QueueCounts(ApiModel):
    pending: int
    failed: int


class FailedItem(ApiModel):
    id: int
    kind: str
    object_id: str
    name: str | None
    op: str
    attempts: int
    error: str | None


class TargetStatus(ApiModel):
    target: TargetOut
    queue: QueueCounts
    objects: int = Field(description="Objects the target holds (pushed at least once)")
    failed: list[FailedItem]


class RetryIn(Strict):
    item_id: int | None = Field(None, ge=1, description="One failed item; none: all of them")


class Queued(ApiModel):
    queued: int


@operation("GET", "/provisioning/targets", tag=TAG, summary="List provisioning targets",
           response=TargetList)
def list_targets(call: Call) -> Reply:
    """``provisioning:targets:read``."""
    with call.transaction() as ctx:
        items = [TargetOut(**targets.view(ctx, t)) for t in targets.list_targets(ctx)]
    return Reply(body=TargetList(items=items))


@operation("POST", "/provisioning/targets", tag=TAG, summary="Add a provisioning target",
           body=NewTarget, response=TargetOut, status=201, errors=(409,))
def create_target(call: Call) -> Reply:
    """``provisioning:targets:create``. A URL the outbound policy refuses, an unknown group or
    a name in use is a 409 and nothing is stored."""
    body: TargetIn = call.body
    with call.transaction() as ctx:
        target = targets.create(ctx, body.as_input())
        out = TargetOut(**targets.view(ctx, target))
    return created(f"/provisioning/targets/{out.id}", out)


@operation("GET", "/provisioning/targets/{target_id}", tag=TAG,
           summary="Read a provisioning target", response=TargetOut)
def read_target(call: Call, target_id: str) -> Reply:
    """``provisioning:targets:read``."""
    with call.transaction() as ctx:
        target = targets.get(ctx, path_id(target_id, "target"))
        return Reply(body=TargetOut(**targets.view(ctx, target)))


@operation("PATCH", "/provisioning/targets/{target_id}", tag=TAG,
           summary="Change a provisioning target", body=TargetIn, response=TargetOut,
           errors=(409,))
def update_target(call: Call, target_id: str) -> Reply:
    """``provisioning:targets:update``; fields left out stay as they are."""
    body: TargetIn = call.body
    with call.transaction() as ctx:
        target = targets.update(ctx, path_id(target_id, "target"), body.as_input())
        return Reply(body=TargetOut(**targets.view(ctx, target)))


@operation("DELETE", "/provisioning/targets/{target_id}", tag=TAG,
           summary="Remove a provisioning target", status=204)
def delete_target(call: Call, target_id: str) -> Reply:
    """``provisioning:targets:delete``; nothing is deleted at the target."""
    with call.transaction() as ctx:
        targets.delete(ctx, path_id(target_id, "target"))
    return Reply(status=204)


@operation("GET", "/provisioning/targets/{target_id}/status", tag=TAG,
           summary="A provisioning target's queue and failures", response=TargetStatus)
def target_status(call: Call, target_id: str) -> Reply:
    """``provisioning:targets:read``."""
    with call.transaction() as ctx:
        return Reply(body=TargetStatus(**targets.status(ctx, path_id(target_id, "target"))))


@operation("POST", "/provisioning/targets/{target_id}/retry", tag=TAG,
           summary="Retry failed provisioning items", body=RetryIn, response=Queued)
def retry(call: Call, target_id: str) -> Reply:
    """``provisioning:queue:update``."""
    body: RetryIn = call.body
    with call.transaction() as ctx:
        count = targets.retry(ctx, path_id(target_id, "target"), body.item_id)
    return Reply(body=Queued(queued=count))


@operation("POST", "/provisioning/targets/{target_id}/full-sync", tag=TAG,
           summary="Queue every object a provisioning target covers", response=Queued)
def full_sync(call: Call, target_id: str) -> Reply:
    """``provisioning:queue:update``."""
    with call.transaction() as ctx:
        count = targets.full_sync(ctx, path_id(target_id, "target"))
    return Reply(body=Queued(queued=count))
