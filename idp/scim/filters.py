"""SCIM filters (RFC 7644 §3.4.2.2) as SQLAlchemy WHERE clauses, and ``sortBy`` as ORDER BY.

scim2-models parses the filter (its grammar applies the RFC errata: ``and`` binds tighter than
``or``, ``not`` before both; Entra's ``emails[type eq "work"].value eq "x"``) and checks it
against the resource model of :mod:`idp.scim.models`: an attribute the model does not declare,
an operator its type does not take (``gt`` on a boolean), a value of the wrong type, all raise
``InvalidFilterException`` (400 ``invalidFilter``). This module walks the tree with a
``FilterVisitor`` and maps every attribute to a column or a correlated subquery, so the database
does the filtering, never Python over the rows.

Each leaf is two-valued (true or false, never SQL NULL), so ``not`` means what RFC 7644 says:
``ne`` and ``not (... eq ...)`` match a user without that attribute, as a missing value is not
equal to anything. String comparisons honour ``caseExact``: ``userName``, names and e-mail are
compared case-insensitively, ``id``, ``externalId`` and references exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import aliased

from ..storage.models import Department, Group, GroupMember, User
from .models import ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA, FullUser
from .models import Group as ScimGroup

EMPLOYEE_NUMBER_FIELD = "employee_number"


@dataclass(frozen=True)
class Attr:
    """One filterable attribute: its SQL expression, its kind, and whether strings compare
    exactly. ``kind``: string, boolean, datetime. ``present`` overrides the presence test."""

    expr: Callable[[], ColumnElement[Any]]
    kind: str = "string"
    case_exact: bool = False
    present: Callable[[], ColumnElement[bool]] | None = None
    sortable: bool = True


@dataclass(frozen=True)
class Multi:
    """A multi-valued attribute whose values live in other rows: ``scope(cond)`` is the
    EXISTS over those rows where ``cond`` (built from ``subs``) holds."""

    scope: Callable[[ColumnElement[bool]], ColumnElement[bool]]
    subs: dict[str, Attr]


def _manager_uuid() -> ColumnElement[Any]:
    boss = aliased(User)
    return select(boss.uuid).where(boss.id == User.manager_id).scalar_subquery()


def _department_name() -> ColumnElement[Any]:
    return select(Department.name).where(Department.id == User.department_id).scalar_subquery()


def _employee_number() -> ColumnElement[Any]:
    return User.custom[EMPLOYEE_NUMBER_FIELD].as_string()


def _user_groups(cond: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists(
        select(GroupMember.user_id)
        .join(Group, Group.id == GroupMember.group_id)
        .where(GroupMember.user_id == User.id, cond)
    )


def _constant(value: str, when: Callable[[], ColumnElement[Any]]) -> Callable[[], Any]:
    """A sub-attribute we do not store but always report (the e-mail's type "work"): the
    constant when the value exists."""
    return lambda: case((when().is_not(None), literal(value)), else_=None)


def _group_id_text() -> ColumnElement[Any]:
    return cast(Group.id, String)


_MEMBER = aliased(User, name="scim_member")

# Attribute paths (lower case; extension attributes by their full URN) of the User resource.
USER_ATTRS: dict[str, Attr | Multi] = {
    "id": Attr(lambda: User.uuid, case_exact=True),
    "externalid": Attr(lambda: User.external_id, case_exact=True),
    "username": Attr(lambda: User.username),
    "name.givenname": Attr(lambda: User.given_name),
    "name.middlename": Attr(lambda: User.middle_name),
    "name.familyname": Attr(lambda: User.family_name),
    "displayname": Attr(lambda: User.display_name),
    "locale": Attr(lambda: User.locale),
    "timezone": Attr(lambda: User.timezone),
    "active": Attr(
        lambda: User.status != "inactive",
        kind="boolean",
        present=lambda: true(),
    ),
    "emails.value": Attr(lambda: User.email),
    "emails.type": Attr(_constant("work", lambda: User.email), sortable=False),
    "phonenumbers.value": Attr(lambda: User.phone),
    "phonenumbers.type": Attr(_constant("work", lambda: User.phone), sortable=False),
    "meta.created": Attr(lambda: User.created_at, kind="datetime"),
    "meta.lastmodified": Attr(lambda: User.updated_at, kind="datetime"),
    "meta.resourcetype": Attr(lambda: literal("User"), present=lambda: true(), sortable=False),
    "groups": Multi(
        _user_groups,
        {
            "value": Attr(_group_id_text, case_exact=True),
            "display": Attr(lambda: Group.path),
            "type": Attr(lambda: literal("direct")),
        },
    ),
    f"{ENTERPRISE_SCHEMA}:employeenumber".lower(): Attr(_employee_number),
    f"{ENTERPRISE_SCHEMA}:department".lower(): Attr(_department_name),
    f"{ENTERPRISE_SCHEMA}:manager.value".lower(): Attr(_manager_uuid, case_exact=True),
}


def _members(cond: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists(
        select(GroupMember.group_id)
        .join(_MEMBER, _MEMBER.id == GroupMember.user_id)
        .where(GroupMember.group_id == Group.id, cond)
    )


GROUP_ATTRS: dict[str, Attr | Multi] = {
    "id": Attr(_group_id_text, case_exact=True),
    "externalid": Attr(lambda: Group.external_id, case_exact=True),
    "displayname": Attr(lambda: Group.path),
    "meta.created": Attr(lambda: Group.created_at, kind="datetime"),
    "meta.lastmodified": Attr(lambda: Group.updated_at, kind="datetime"),
    "meta.resourcetype": Attr(lambda: literal("Group"), present=lambda: true(), sortable=False),
    "members": Multi(
        _members,
        {
            "value": Attr(lambda: _MEMBER.uuid, case_exact=True),
            "type": Attr(lambda: literal("User")),
        },
    ),
}

# The single-valued form of a multi-valued attribute: "emails" compares "emails.value".
_MULTI_INLINE = ("emails", "phonenumbers")


@dataclass(frozen=True)
class Target:
    """Which resource a filter is over: its model, its attribute map, its core schema."""

    model: Any
    attrs: dict[str, Attr | Multi]
    schema: str


USERS = Target(FullUser, USER_ATTRS, USER_SCHEMA)
GROUPS = Target(ScimGroup, GROUP_ATTRS, GROUP_SCHEMA)


def _key(target: Target, path: AttrPath) -> str:
    """The map key of an attribute path: core attributes without their URN, extension
    attributes with theirs."""
    uri = (path.uri or "").lower()
    name = path.attr.lower() + (f".{path.sub_attr.lower()}" if path.sub_attr else "")
    if uri and uri != target.schema.lower():
        return f"{uri}:{name}"
    return name


def _unsupported(path: str) -> InvalidFilterException:
    return InvalidFilterException(detail=f"filtering on {path} is not supported")


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        got = value
    elif isinstance(value, str):
        try:
            got = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidFilterException(detail=f"{value!r} is not a dateTime") from None
    else:
        raise InvalidFilterException(detail=f"{value!r} is not a dateTime")
    return got if got.tzinfo else got.replace(tzinfo=UTC)


class _SqlFilter(FilterVisitor[ColumnElement[bool]]):
    def __init__(self, target: Target, dialect: str) -> None:
        self.target = target
        self.dialect = dialect

    # --- attributes ---------------------------------------------------------------------------

    def _lookup(self, path: AttrPath, subs: dict[str, Attr] | None) -> tuple[Attr | Multi, str]:
        """The attribute a path names; for a multi-valued one kept in other rows, also the
        sub-attribute compared ("groups" compares "groups.value")."""
        if subs is not None:
            got = subs.get(path.attr.lower()) if not (path.sub_attr or path.uri) else None
            if got is None:
                raise _unsupported(str(path))
            return got, ""
        key = _key(self.target, path)
        got = self.target.attrs.get(key)
        if got is None and key in _MULTI_INLINE:
            got = self.target.attrs.get(f"{key}.value")
        if got is None and path.sub_attr:
            head = self.target.attrs.get(key.rsplit(".", 1)[0])
            if isinstance(head, Multi) and path.sub_attr.lower() in head.subs:
                return head, path.sub_attr.lower()
        if got is None:
            raise _unsupported(str(path))
        return got, "value"

    def _leaf(
        self,
        path: AttrPath,
        subs: dict[str, Attr] | None,
        build: Callable[[Attr], ColumnElement[bool]],
    ) -> ColumnElement[bool]:
        found, sub = self._lookup(path, subs)
        if isinstance(found, Multi):
            # "groups eq x", "members.value eq x": any of the values matches.
            return found.scope(build(found.subs[sub]))
        return build(found)

    # --- nodes --------------------------------------------------------------------------------

    def visit_logical_expr(self, node: LogicalExpr) -> ColumnElement[bool]:
        parts = [self.visit(t) for t in node.terms]
        return and_(*parts) if node.op == LogicalOperator.and_ else or_(*parts)

    def visit_not(self, node: Not) -> ColumnElement[bool]:
        return not_(self.visit(node.expr))

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        return self._present(node, None)

    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        return self._compare(node, None)

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        key = _key(self.target, node.attr_path)
        found = self.target.attrs.get(key)
        if isinstance(found, Multi):
            return found.scope(_SubFilter(self, found.subs).visit(node.val_filter))
        if key in _MULTI_INLINE:
            # The user's one e-mail (phone) is the only value: the selection holds when it
            # exists and the inner filter holds on its sub-attributes.
            subs = {
                k.split(".", 1)[1]: v
                for k, v in self.target.attrs.items()
                if isinstance(v, Attr) and k.startswith(key + ".")
            }
            value = subs["value"]
            return and_(value.expr().is_not(None), _SubFilter(self, subs).visit(node.val_filter))
        raise _unsupported(str(node.attr_path))

    # --- leaves -------------------------------------------------------------------------------

    def _present(self, node: Present, subs: dict[str, Attr] | None) -> ColumnElement[bool]:
        def build(attr: Attr) -> ColumnElement[bool]:
            if attr.present is not None:
                return attr.present()
            col = attr.expr()
            if attr.kind == "string":
                return and_(col.is_not(None), col != "")
            return col.is_not(None)

        return self._leaf(node.attr_path, subs, build)

    def _compare(self, node: Comparison, subs: dict[str, Attr] | None) -> ColumnElement[bool]:
        op, raw = node.op, node.value

        def build(attr: Attr) -> ColumnElement[bool]:
            col = attr.expr()
            if raw is None:
                # RFC 7644: a comparison with null; eq null is "not present".
                missing = col.is_(None) if attr.kind != "string" else or_(col.is_(None), col == "")
                if op == CompareOperator.eq:
                    return missing
                if op == CompareOperator.ne:
                    return not_(missing)
                raise InvalidFilterException(detail=f"{op.value} cannot compare with null")
            if attr.kind == "boolean":
                if not isinstance(raw, bool) or op not in (CompareOperator.eq, CompareOperator.ne):
                    raise InvalidFilterException(
                        detail=f"{node.attr_path} is a boolean: use eq or ne with true or false"
                    )
                hit = and_(col.is_not(None), col == raw)
                return hit if op == CompareOperator.eq else not_(hit)
            if attr.kind == "datetime":
                return self._ordered(col, _datetime(raw), op, exact=True)
            if not isinstance(raw, str):
                raise InvalidFilterException(detail=f"{node.attr_path} compares with a string")
            if attr.case_exact:
                return self._string(col, raw, op, exact=True)
            return self._string(func.lower(col), raw.lower(), op, exact=False)

        return self._leaf(node.attr_path, subs, build)

    def _ordered(self, col: Any, value: Any, op: CompareOperator, *, exact: bool) -> Any:
        present = col.is_not(None)
        if op == CompareOperator.eq:
            return and_(present, col == value)
        if op == CompareOperator.ne:
            return or_(col.is_(None), col != value)
        if op == CompareOperator.gt:
            return and_(present, col > value)
        if op == CompareOperator.ge:
            return and_(present, col >= value)
        if op == CompareOperator.lt:
            return and_(present, col < value)
        if op == CompareOperator.le:
            return and_(present, col <= value)
        raise InvalidFilterException(detail=f"{op.value} does not apply to a dateTime")

    def _string(self, col: Any, value: str, op: CompareOperator, *, exact: bool) -> Any:
        if op in (CompareOperator.co, CompareOperator.sw, CompareOperator.ew):
            n = len(value)
            present = col.is_not(None)
            if op == CompareOperator.sw:
                return and_(present, func.substr(col, 1, n) == value)
            if op == CompareOperator.ew:
                start = func.length(col) - n + 1
                return and_(present, func.length(col) >= n, func.substr(col, start) == value)
            like = col.like("%" + _escape_like(value) + "%", escape="\\")
            if exact and self.dialect == "sqlite":
                # SQLite's LIKE ignores ASCII case; instr() does not.
                return and_(present, func.instr(col, value) > 0)
            return and_(present, like)
        if op in (CompareOperator.gt, CompareOperator.ge, CompareOperator.lt, CompareOperator.le):
            # Lexicographic by code point, as RFC 7644 asks, whatever the collation.
            if self.dialect == "postgresql":
                col = col.collate("C")
            return self._ordered(col, value, op, exact=exact)
        return self._ordered(col, value, op, exact=exact)


class _SubFilter(_SqlFilter):
    """The filter inside ``attr[...]``: names are sub-attributes of ``attr``."""

    def __init__(self, outer: _SqlFilter, subs: dict[str, Attr]) -> None:
        super().__init__(outer.target, outer.dialect)
        self.subs = subs

    def visit_present(self, node: Present) -> ColumnElement[bool]:
        return self._present(node, self.subs)

    def visit_comparison(self, node: Comparison) -> ColumnElement[bool]:
        return self._compare(node, self.subs)

    def visit_value_path(self, node: ValuePath) -> ColumnElement[bool]:
        raise _unsupported(str(node))


def parse(target: Target, text: str) -> ScimFilter[Any]:
    """The filter parsed and checked against the resource model (InvalidFilterException)."""
    if len(text) > 4096:
        raise InvalidFilterException(detail="the filter is longer than 4096 characters")
    try:
        parsed = ScimFilter[target.model](text)
        parsed._validate_semantics(strict=True)
    except InvalidFilterException:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidFilterException(detail=str(exc)) from None
    return parsed


def where(target: Target, text: str, dialect: str = "sqlite") -> ColumnElement[bool]:
    """The WHERE clause of ``text`` over ``User`` (or ``Group``) rows."""
    return _SqlFilter(target, dialect).visit(parse(target, text).ast)


def order_by(target: Target, sort_by: str) -> ColumnElement[Any]:
    """The column ``sortBy`` names (RFC 7644 §3.4.2.3); ``invalidValue`` when it names none."""
    from scim2_models import InvalidValueException, Path

    try:
        path = Path[target.model](sort_by)
        node = path.ast
    except Exception:  # noqa: BLE001 - any unreadable path is the client's error
        raise InvalidValueException(detail=f"sortBy: {sort_by!r} is not an attribute") from None
    if not isinstance(node, AttrPath):
        raise InvalidValueException(detail=f"sortBy: {sort_by!r} is not an attribute")
    key = _key(target, node)
    found = target.attrs.get(key) or target.attrs.get(f"{key}.value")
    if not isinstance(found, Attr) or not found.sortable:
        raise InvalidValueException(detail=f"sortBy: sorting by {sort_by} is not supported")
    col = found.expr()
    return col if found.case_exact or found.kind != "string" else func.lower(col)


__all__ = ["GROUPS", "USERS", "Target", "order_by", "parse", "where"]
