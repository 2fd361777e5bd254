"""``/api/v1/custom-fields``: the definitions of the admin-defined user attributes (the values
are part of each user). A field is addressed by its id or its name. Permissions: see
``idp.manage.fields``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, RootModel

from ...manage import fields as manage_fields
from ...storage.models import CustomField
from .common import ApiModel, Page, PageQuery, Strict
from .framework import Call, Reply, etag_of, operation
from .shapes import AS_SENT, Flag, Name, Names, created, data_refusal, given, json_int

TAG = "custom-fields"
FIELD_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
PlainType = Literal["string", "integer", "boolean", "date", "email", "url"]

Pattern = Annotated[
    str,
    AS_SENT,
    Field(
        min_length=1,
        max_length=500,
        pattern=r"^[^\x00]*$",
        description="a regular expression every value must match in full",
        json_schema_extra={"format": "regex"},
    ),
]
Choices = Annotated[list[Name], Field(max_length=200, description="the allowed values")]
SortOrder = json_int(-1_000_000, 1_000_000)


class FieldOut(ApiModel):
    id: int
    name: str
    label: str
    labels: dict[str, str]
    type: str
    required: bool
    pattern: str | None
    choices: list[str]
    visible_to_user: bool
    editable_by_user: bool
    sort_order: int


class FieldPage(Page[FieldOut]):
    pass


class _FieldIn(Strict):
    name: Annotated[
        str,
        AS_SENT,
        Field(pattern=FIELD_NAME_PATTERN, description="the key the values are stored under"),
    ]
    label: Name
    labels: Names = {}
    required: Flag = False
    pattern: Pattern | None = None
    visible_to_user: Flag = True
    editable_by_user: Flag = False
    sort_order: SortOrder = 0


class PlainFieldIn(_FieldIn):
    type: PlainType = "string"
    choices: Choices = []


class ChoiceFieldIn(_FieldIn):
    type: Literal["choice"]
    choices: Annotated[list[Name], Field(min_length=1, max_length=200)]


class FieldIn(RootModel[PlainFieldIn | ChoiceFieldIn]):
    """A new field; a ``choice`` field needs its ``choices``."""


class FieldPatch(Strict):
    """A JSON merge patch. Name and type cannot change; ``pattern: null`` removes the
    pattern. A ``choice`` field keeps at least one choice."""

    label: Name = Field(None)
    labels: Names = Field(None)
    required: Flag = Field(None)
    pattern: Pattern | None = None
    choices: Choices = Field(None)
    visible_to_user: Flag = Field(None)
    editable_by_user: Flag = Field(None)
    sort_order: SortOrder = Field(None)


class DeleteFieldQuery(Strict):
    force: bool = Field(False, description="delete it even while users hold values (they go too)")


def _out(f: CustomField) -> FieldOut:
    return FieldOut(
        id=f.id,
        name=f.name,
        label=f.label,
        labels=dict(f.labels or {}),
        type=f.type,
        required=f.required,
        pattern=f.pattern,
        choices=list(f.choices or []),
        visible_to_user=f.visible_to_user,
        editable_by_user=f.editable_by_user,
        sort_order=f.sort_order or 0,
    )


@operation(
    "GET",
    "/custom-fields",
    tag=TAG,
    summary="List custom-field definitions",
    query=PageQuery,
    response=FieldPage,
)
def list_fields(call: Call) -> Reply:
    """In display order (``users:fields:read``)."""
    q: PageQuery = call.query
    with call.transaction() as ctx:
        rows = manage_fields.list_all(ctx)
    start = (q.page - 1) * q.per_page
    items = [_out(f) for f in rows[start : start + q.per_page]]
    return Reply(body=FieldPage(items=items, total=len(rows), page=q.page, per_page=q.per_page))


@operation(
    "POST",
    "/custom-fields",
    tag=TAG,
    summary="Define a custom field",
    body=FieldIn,
    response=FieldOut,
    status=201,
    etag=True,
    errors=(409,),
)
def create_field(call: Call) -> Reply:
    """``users:fields:create``. 409: the name is taken, or the pattern is not a regular
    expression that Python and JavaScript read alike."""
    body = call.body.root
    with call.transaction() as ctx, data_refusal():
        f = manage_fields.create(
            ctx,
            body.name,
            body.label,
            type=body.type,
            required=body.required,
            pattern=body.pattern,
            choices=body.choices,
            visible_to_user=body.visible_to_user,
            editable_by_user=body.editable_by_user,
            labels=body.labels,
            sort_order=body.sort_order,
        )
        out = _out(f)
    return created(f"/custom-fields/{out.name}", out)


@operation(
    "GET",
    "/custom-fields/{field}",
    tag=TAG,
    summary="Read a custom-field definition (by id or name)",
    response=FieldOut,
    etag=True,
)
def read_field(call: Call, field: str) -> Reply:
    """``users:fields:read``."""
    with call.transaction() as ctx:
        out = _out(manage_fields.get(ctx, field))
    return Reply(body=out)


@operation(
    "PATCH",
    "/custom-fields/{field}",
    tag=TAG,
    summary="Change a custom-field definition",
    body=FieldPatch,
    response=FieldOut,
    etag=True,
)
def update_field(call: Call, field: str) -> Reply:
    """``users:fields:update``. 409: the pattern is not a regular expression that Python and
    JavaScript read alike, or a choice field would have no choices."""
    changes = given(call.body)
    with call.transaction() as ctx:
        f = manage_fields.get(ctx, field)
        call.if_match(etag_of(_out(f)))
        with data_refusal():
            out = _out(manage_fields.update(ctx, f, changes))
    return Reply(body=out)


@operation(
    "DELETE",
    "/custom-fields/{field}",
    tag=TAG,
    summary="Delete a custom-field definition",
    query=DeleteFieldQuery,
    status=204,
    etag=True,
    errors=(409,),
)
def delete_field(call: Call, field: str) -> Reply:
    """``users:fields:delete``. 409 while users hold values for it, unless ``force=true``
    (then the values are removed from every user)."""
    force = call.query.force
    with call.transaction() as ctx:
        f = manage_fields.get(ctx, field)
        call.if_match(etag_of(_out(f)))
        manage_fields.delete(ctx, f, force=force)
    return Reply(status=204)
