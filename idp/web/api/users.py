"""``/api/v1/users``: the user directory (``docs/api.md`` "Users").

Thin: parse, call ``idp.manage.users`` (permission checks, delegation, audit), render. A user is
addressed by their ``uuid`` (the OIDC ``sub``); one outside the caller's reach answers 404
exactly as a missing one does. The representation never carries a password hash or a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)
from sqlalchemy import select

from ...core import rbac as core_rbac
from ...errors import Conflict, NotFound, ValidationError
from ...manage import Context, gdpr, org, users
from ...manage import sessions as manage_sessions
from ...storage.directory import LOCALE_RE, USERNAME_RE, NewUser
from ...storage.models import Company, Department, Position, User
from ..devices import SessionView, session_views
from .common import ApiModel, Page, PageQuery, Strict
from .framework import PREFIX, Call, Reply, etag_of, operation

TAG = "users"

# --- representations ---------------------------------------------------------------------------


class UserOut(ApiModel):
    """A user as the API shows them (no password hash, no secrets)."""

    id: str = Field(description="The user's stable id (uuid; the OIDC sub, the SCIM id)")
    username: str = Field(description="Sign-in name, unique (case-insensitive)")
    email: str | None = Field(description="Lower-cased e-mail address")
    email_verified: bool = Field(description="The address is known to belong to the user")
    given_name: str | None = Field(description="First name")
    middle_name: str | None = Field(description="Middle name(s)")
    family_name: str | None = Field(description="Last name")
    display_name: str | None = Field(description="How the name is shown, when not first + last")
    phone: str | None = Field(description="Phone number (+49 30 1234567)")
    phone_verified: bool = Field(description="The number is known to belong to the user")
    locale: str | None = Field(description="Language tag (de, pt-BR)")
    timezone: str | None = Field(description="IANA time zone (Europe/Berlin)")
    color: str | None = Field(description="#rrggbb, for avatars and lists")
    status: str = Field(description="active, inactive, locked, pending or expired")
    start_date: date | None = Field(description="First working day (sign-in refused before)")
    end_date: date | None = Field(description="Last working day (sign-in refused after)")
    source: str = Field(description="Where the account comes from: local, ldap, scim...")
    external_id: str | None = Field(description="The id in the system that provisions it")
    password_set: bool = Field(description="The user has a local password")
    password_changed_at: datetime | None = Field(description="When the password was last set")
    must_change_password: bool = Field(description="A new password is asked at next sign-in")
    require_mfa: bool = Field(description="A second factor is required at sign-in")
    company: str | None = Field(description="Company slug")
    department_id: int | None = Field(description="Department id")
    department: str | None = Field(description="Department name")
    position: str | None = Field(description="Position name")
    manager_id: str | None = Field(description="The manager's user id (uuid)")
    custom: dict[str, Any] = Field(description="Values of the administrator-defined fields")
    created_at: datetime = Field(description="When the account was created")
    updated_at: datetime = Field(description="When the account last changed")
    last_login_at: datetime | None = Field(description="The last sign-in")


class UserPage(Page[UserOut]):
    pass


def render(ctx: Context, user: User, managers: dict[int, str] | None = None) -> UserOut:
    if user.manager_id is None:
        manager = None
    elif managers is not None and user.manager_id in managers:
        manager = managers[user.manager_id]
    else:
        manager = ctx.db.scalar(select(User.uuid).where(User.id == user.manager_id))
    return UserOut(
        id=user.uuid,
        username=user.username,
        email=user.email,
        email_verified=bool(user.email_verified),
        given_name=user.given_name,
        middle_name=user.middle_name,
        family_name=user.family_name,
        display_name=user.display_name,
        phone=user.phone,
        phone_verified=bool(user.phone_verified),
        locale=user.locale,
        timezone=user.timezone,
        color=user.color,
        status=user.status,
        start_date=user.start_date,
        end_date=user.end_date,
        source=user.source,
        external_id=user.external_id,
        password_set=bool(user.password_hash),
        password_changed_at=user.password_changed_at,
        must_change_password=bool(user.must_change_password),
        require_mfa=bool(user.require_mfa),
        company=user.company.slug if user.company else None,
        department_id=user.department_id,
        department=user.department.name if user.department else None,
        position=user.position.name if user.position else None,
        manager_id=manager,
        custom=dict(user.custom or {}),
        created_at=user.created_at,
        updated_at=user.updated_at,
        last_login_at=user.last_login_at,
    )


def _location(uuid: str) -> str:
    return f"{PREFIX}/users/{uuid}"


# What the schema says is what the server accepts: every rule a single field must meet is in
# its JSON Schema (pattern, enum, length), so a request that matches the document is refused
# only by the data (404 for a reference to nothing, 409 for a clash), never with 400.
_PLAIN = r"^[^\x00-\x1f]*$"  # no control characters
_USERNAME = USERNAME_RE.pattern
# No control characters or spaces of any kind, spelled out: "\s" means slightly different sets
# to JSON Schema's ECMA-262 regexes (U+FEFF, not U+0085) and to pydantic's Rust ones.
_NOT_IN_EMAIL = r"@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_EMAIL = rf"^[^{_NOT_IN_EMAIL}]{{1,64}}@[^{_NOT_IN_EMAIL}]+\.[^{_NOT_IN_EMAIL}]+$"
# users.PHONE_RE without surrounding spaces (they are stripped before it is checked)
_PHONE = r"^\+?[0-9()./-][0-9 ()./-]{1,37}[0-9()./-]$"
_LOCALE = LOCALE_RE.pattern
_COLOR = users.COLOR_RE.pattern
TimeZone = Literal[tuple(sorted(available_timezones()))]  # type: ignore[valid-type]


class Exact(Strict):
    """A request model whose text is taken as sent: no whitespace stripping before the
    patterns are checked, so the document's pattern and the check are the same test (the
    operations strip names themselves)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


# --- list ----------------------------------------------------------------------------------------

Sort = Literal[
    "username",
    "-username",
    "email",
    "-email",
    "family_name",
    "-family_name",
    "created_at",
    "-created_at",
    "last_login_at",
    "-last_login_at",
    "start_date",
    "-start_date",
    "end_date",
    "-end_date",
]


class UsersQuery(PageQuery):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    q: str | None = Field(
        None,
        max_length=200,
        pattern=_PLAIN,
        description="Contains (case-insensitive) in the username, names, e-mail or phone",
    )
    company: str | None = Field(
        None, pattern=_PLAIN, max_length=64, description="Company slug or id"
    )
    department: str | None = Field(
        None,
        max_length=1000,
        pattern=_PLAIN,
        description='Department id or "company-slug/Dept/Sub"; its sub-departments included',
    )
    group: str | None = Field(
        None,
        pattern=_PLAIN,
        max_length=1000,
        description="Group path (staff/it); its subgroups included",
    )
    position: str | None = Field(
        None, pattern=_PLAIN, max_length=200, description="Position id or name"
    )
    status: Literal["active", "inactive", "locked", "pending", "expired"] | None = Field(
        None, description="Account status"
    )
    employment: Literal["current", "future", "past", "none"] | None = Field(
        None,
        description="By start/end date today: current (started or no start date, not ended), "
        "future (starts later), past (ended), none (no dates)",
    )
    start_from: date | None = Field(None, description="Start date on or after (YYYY-MM-DD)")
    start_to: date | None = Field(None, description="Start date on or before (YYYY-MM-DD)")
    end_from: date | None = Field(None, description="End date on or after (YYYY-MM-DD)")
    end_to: date | None = Field(None, description="End date on or before (YYYY-MM-DD)")
    sort: Sort = Field("username", description='Sort key; a "-" prefix sorts descending')


def user_query(q: Any, **paging: int) -> users.UserQuery:
    """The search that ``q`` asks for: the filters and sort of ``GET /users`` (the export takes
    the same ones), and ``paging`` (page, per_page) when given."""
    return users.UserQuery(
        q=q.q,
        company=q.company,
        department=q.department,
        group=q.group,
        position=q.position,
        status=q.status,
        employment=q.employment,
        start_from=q.start_from,
        start_to=q.start_to,
        end_from=q.end_from,
        end_to=q.end_to,
        sort=q.sort,
        **paging,
    )


@operation(
    "GET",
    "/users",
    tag=TAG,
    summary="List users",
    query=UsersQuery,
    response=UserPage,
    description="The users the caller may read (`users:accounts:read`; a delegated "
    "administrator sees their company or department subtree only), filtered, sorted and "
    "paginated in the database.",
)
def list_users(call: Call) -> Reply:
    q: UsersQuery = call.query
    with call.transaction() as ctx:
        rows, total = users.search(
            ctx,
            user_query(q, page=q.page, per_page=q.per_page),
        )
        ids = {u.manager_id for u in rows if u.manager_id is not None}
        managers = (
            {i: u for i, u in ctx.db.execute(select(User.id, User.uuid).where(User.id.in_(ids)))}
            if ids
            else {}
        )
        items = [render(ctx, u, managers) for u in rows]
    return Reply(body=UserPage(items=items, total=total, page=q.page, per_page=q.per_page))


# --- create ------------------------------------------------------------------------------------


def _text(limit: int, description: str | None = None) -> Any:
    return Field(None, max_length=limit, pattern=_PLAIN, description=description)


class Placement(Exact):
    company: str | None = Field(
        None, max_length=64, pattern=_PLAIN, description="Company slug or id"
    )
    department: str | None = Field(
        None,
        max_length=1000,
        pattern=_PLAIN,
        description='Department id or "company-slug/Dept/Sub"; sets the company too',
    )
    position: str | None = Field(
        None, max_length=200, pattern=_PLAIN, description="Position name in the user's company"
    )
    manager_id: str | None = Field(
        None, max_length=64, pattern=_PLAIN, description="The manager's user id"
    )


class UserFields(Placement):
    given_name: str | None = _text(150, "First name")
    middle_name: str | None = _text(150, "Middle name(s)")
    family_name: str | None = _text(150, "Last name")
    display_name: str | None = _text(300, "How the name is shown, when not first + last")
    phone: str | None = Field(
        None, max_length=40, pattern=_PHONE, description="+49 30 1234567 (digits, + ( ) . / -)"
    )
    locale: str | None = Field(
        None, max_length=35, pattern=_LOCALE, description="Language tag (de, pt-BR)"
    )
    timezone: TimeZone | None = Field(None, description="IANA time zone (Europe/Berlin)")
    color: str | None = Field(None, pattern=_COLOR, description="#rrggbb")
    start_date: date | None = Field(None, description="First working day, YYYY-MM-DD")
    end_date: date | None = Field(
        None, description="Last working day, YYYY-MM-DD; before start_date is 409"
    )
    external_id: str | None = _text(255, "The id in the system that provisions the user")
    custom: dict[str, Any] | None = Field(
        None,
        description="Values of administrator-defined custom fields, by field name (an "
        "unknown name is 404)",
    )


class UserCreate(UserFields):
    username: str = Field(
        min_length=1,
        max_length=150,
        pattern=_USERNAME,
        description="Letters, digits and . _ @ + -, starting with a letter or digit; unique "
        "(case-insensitive)",
    )
    email: str | None = Field(
        None, max_length=320, pattern=_EMAIL, description="E-mail address; unique"
    )
    email_verified: StrictBool = Field(
        False, description="The address is known to be theirs (needs an e-mail)"
    )
    phone_verified: StrictBool = Field(False, description="The number is known to be theirs")
    password: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="Initial password; the password policy applies (409 names the rules it "
        "breaks). Omit it to let the user set one by e-mail",
        json_schema_extra={"writeOnly": True},
    )
    must_change_password: StrictBool = Field(
        False, description="Ask for a new password at the first sign-in"
    )
    require_mfa: StrictBool = Field(False, description="Require a second factor at sign-in")
    active: StrictBool = Field(True, description="false: created inactive")
    groups: list[Annotated[str, StringConstraints(max_length=1000, pattern=_PLAIN)]] = Field(
        default_factory=list, max_length=100, description="Group paths (staff/it)"
    )
    roles: list[Annotated[str, StringConstraints(max_length=200, pattern=_PLAIN)]] = Field(
        default_factory=list, max_length=100, description="Global role names"
    )


def _placement(ctx: Context, user: User, body: Placement, given: set[str]) -> None:
    """Place the user where ``body`` says (org.place_user). A field not given keeps its value,
    unless the user moves to another company: then the old department and position go."""
    wanted = {"company", "department", "position", "manager_id"} & given
    if not wanted:
        return
    d = ctx.directory
    company = user.company
    if "company" in wanted:
        try:
            company = d.company(body.company) if body.company else None
        except NotFound as exc:
            raise NotFound(f"company: {exc}") from None
    department = ctx.db.get(Department, user.department_id) if user.department_id else None
    if "department" in wanted:
        try:
            department = d.department(body.department) if body.department else None
        except NotFound as exc:
            raise NotFound(f"department: {exc}") from None
        if department is not None and "company" not in wanted:
            company = ctx.db.get(Company, department.company_id)
        if department is not None and company is not None and department.company_id != company.id:
            raise Conflict("department: not in that company")
    elif department is not None and (company is None or department.company_id != company.id):
        department = None
    position = ctx.db.get(Position, user.position_id) if user.position_id else None
    if "position" in wanted:
        position = None
        if body.position:
            if company is None:
                raise Conflict("position: give the company (or a department) too")
            try:
                position = d.position(company, body.position)
            except NotFound as exc:
                raise NotFound(f"position: {exc}") from None
    elif position is not None and (company is None or position.company_id != company.id):
        position = None
    manager = ctx.db.get(User, user.manager_id) if user.manager_id else None
    if "manager_id" in wanted:
        manager = None
        if body.manager_id:
            manager = ctx.db.scalar(select(User).where(User.uuid == body.manager_id))
            if manager is None:
                raise NotFound("manager_id: no such user")
    org.place_user(
        ctx, user, company=company, department=department, position=position, manager=manager
    )
    ctx.db.expire(user, ["company", "department", "position"])


@contextmanager
def _policy_conflict() -> Iterator[None]:
    """A password the policy refuses is 409: the request matches its schema, the server's
    rules (and the user's history) refuse the value. So is a custom-field value the field's
    definition refuses (a required field left out, a value of the wrong type or form): the
    definitions are data, not part of the schema."""
    try:
        yield
    except users.PasswordRejected as exc:
        raise Conflict(str(exc)) from None
    except ValidationError as exc:  # the schema holds every rule of form: this is data
        raise Conflict(str(exc)) from None


def _known_custom(ctx: Context, custom: dict[str, Any] | None) -> None:
    """An unknown custom field is 404 (the fields are data, not part of the schema)."""
    if custom:
        known = {f.name for f in ctx.directory.fields()}
        for name in custom:
            if name not in known:
                raise NotFound(f"custom: there is no custom field {name!r}")


def _fields(body: BaseModel, given: set[str], skip: set[str]) -> dict[str, Any]:
    placement = {"company", "department", "position", "manager_id"}
    return {k: getattr(body, k) for k in given if k not in placement | skip}


@operation(
    "POST",
    "/users",
    tag=TAG,
    summary="Create a user",
    body=UserCreate,
    response=UserOut,
    status=201,
    errors=(404, 409),
    description="`users:accounts:create` (global); with `roles` also `users:roles:assign`, "
    "with `groups` `users:groups:assign`, and every permission the roles and groups carry; "
    "a placement also `users:accounts:update`. Answers 201 with `Location`. A duplicate "
    "username or e-mail, an end date before the start date or a password the policy refuses "
    "is 409; an unknown group, role, company, department, position, manager or custom field "
    "is 404 naming the field.",
)
def create_user(call: Call) -> Reply:
    body: UserCreate = call.body
    given = set(body.model_fields_set)
    with call.transaction() as ctx:
        d = ctx.directory
        for field, refs, find in (
            ("groups", body.groups, d.group_by_path),
            ("roles", body.roles, d.role_by_name),
        ):
            for ref in refs:
                try:
                    find(ref)
                except NotFound as exc:
                    raise NotFound(f"{field}: {exc}") from None
        new = NewUser(
            username=body.username,
            email=body.email,
            given_name=body.given_name,
            family_name=body.family_name,
            start_date=body.start_date,
            end_date=body.end_date,
        )
        extra = _fields(
            body,
            given,
            {
                "username",
                "email",
                "email_verified",
                "password",
                "must_change_password",
                "groups",
                "roles",
                "given_name",
                "family_name",
                "start_date",
                "end_date",
                "require_mfa",
            },
        )
        if not body.active:
            extra["active"] = False
        _known_custom(ctx, body.custom)
        with _policy_conflict():
            user = users.create(
                ctx,
                new,
                password=body.password,
                groups=body.groups,
                roles=body.roles,
                email_verified=body.email_verified,
                must_change_password=body.must_change_password,
                require_mfa=bool(body.require_mfa),
                check_password_policy=True,
                fields=extra,
            )
        _placement(ctx, user, body, given)
        out = render(ctx, user)
    return Reply(status=201, body=out, headers={"Location": _location(out.id)})


# --- one user --------------------------------------------------------------------------------


@operation(
    "GET",
    "/users/{user_id}",
    tag=TAG,
    summary="Read a user",
    response=UserOut,
    etag=True,
    description="`users:accounts:read` over the user. The `ETag` goes into `If-Match` of a "
    "later PATCH or DELETE. 404 for an unknown id and for a user outside the caller's reach.",
)
def read_user(call: Call, user_id: str) -> Reply:
    with call.transaction() as ctx:
        out = render(ctx, users.get(ctx, user_id))
    return Reply(body=out)


class UserPatch(UserFields):
    """A JSON merge patch (RFC 7396): the fields given change, ``null`` clears one (within
    ``custom``: clears that custom field); the fields left out stay."""

    # Never null: these cannot be cleared, only changed.
    username: str = Field(
        None, min_length=1, max_length=150, pattern=_USERNAME, description="Unique"
    )
    email: str | None = Field(
        None,
        max_length=320,
        pattern=_EMAIL,
        description="A changed address is unverified unless email_verified says otherwise",
    )
    email_verified: StrictBool = Field(None, description="The address is known to be theirs")
    phone_verified: StrictBool = Field(
        None, description="A changed number is unverified unless this says otherwise"
    )
    require_mfa: StrictBool = Field(None, description="Require a second factor at sign-in")
    active: StrictBool = Field(
        None, description="false: inactive (no sign-in); true: active (a locked account is 409)"
    )


@operation(
    "PATCH",
    "/users/{user_id}",
    tag=TAG,
    summary="Change a user (JSON merge patch)",
    body=UserPatch,
    response=UserOut,
    etag=True,
    errors=(409,),
    description="`users:accounts:update` over the user. Send `application/merge-patch+json` "
    "(or `application/json`); `null` clears a field. With `If-Match` a stale tag answers 412 "
    "and changes nothing. Unknown fields (`id`, `password_hash`, `roles`, `status`...) are "
    "400 naming the field: roles, passwords, locks and sessions have their own operations.",
)
def patch_user(call: Call, user_id: str) -> Reply:
    body: UserPatch = call.body
    given = set(body.model_fields_set)
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:accounts:update")
        call.if_match(etag_of(render(ctx, user)))
        changes = _fields(body, given, set())
        _known_custom(ctx, body.custom)
        with _policy_conflict():
            users.update(ctx, user, changes)
        _placement(ctx, user, body, given)
        out = render(ctx, user)
    return Reply(body=out)


class DeleteQuery(Strict):
    erase: bool = Field(
        False,
        description="GDPR erasure (docs/gdpr.md): also blank the personal fields of the user's "
        "audit rows and their pending links; audited as user.erased",
    )


@operation(
    "DELETE",
    "/users/{user_id}",
    tag=TAG,
    summary="Delete (or erase) a user",
    status=204,
    etag=True,
    query=DeleteQuery,
    errors=(409,),
    description="`users:accounts:delete` over the user: the account goes with its "
    "memberships, role assignments, second factors and tokens; their SSO sessions end "
    "(applications are told). With `erase=true` it is a GDPR erasure: the personal fields of "
    "the user's audit rows are blanked too and mailed links revoked. Nobody deletes their own "
    "account, nor the last administrator (409).",
)
def delete_user(call: Call, user_id: str) -> Reply:
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:accounts:delete")
        call.if_match(etag_of(render(ctx, user)))
        if call.query.erase:
            gdpr.erase(ctx, user, sessions=call.svc.sso_sessions)
        else:
            users.delete(ctx, user, sessions=call.svc.sso_sessions)
    return Reply(status=204)


# --- account actions ---------------------------------------------------------------------------


def _act(call: Call, user_id: str, permission: str, fn) -> Reply:
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, permission)
        fn(ctx, user)
        out = render(ctx, user)
    return Reply(body=out)


@operation(
    "POST",
    "/users/{user_id}/lock",
    tag=TAG,
    summary="Lock an account",
    response=UserOut,
    errors=(409,),
    description="`users:accounts:update` over the user: status `locked`, no sign-in and no "
    "new tokens until unlocked. Existing sessions stay (end them with DELETE .../sessions).",
)
def lock_user(call: Call, user_id: str) -> Reply:
    return _act(call, user_id, "users:accounts:update", users.lock)


@operation(
    "POST",
    "/users/{user_id}/unlock",
    tag=TAG,
    summary="Unlock an account",
    response=UserOut,
    description="`users:lockout:unlock` over the user: lifts an administrator's lock and the "
    "temporary lockout after failed sign-ins.",
)
def unlock_user(call: Call, user_id: str) -> Reply:
    return _act(call, user_id, "users:lockout:unlock", users.unlock)


@operation(
    "POST",
    "/users/{user_id}/force-password-change",
    tag=TAG,
    summary="Ask for a new password at the next sign-in",
    response=UserOut,
    description="`users:password:reset` over the user.",
)
def force_password_change(call: Call, user_id: str) -> Reply:
    return _act(call, user_id, "users:password:reset", users.force_password_change)


class PasswordSet(Exact):
    password: str = Field(
        min_length=1,
        max_length=1024,
        description="The new password, as typed (spaces kept); the password policy applies "
        "(409 names the rules it breaks)",
        json_schema_extra={"writeOnly": True},
    )
    temporary: StrictBool = Field(False, description="The user must change it at next sign-in")


@operation(
    "POST",
    "/users/{user_id}/password",
    tag=TAG,
    summary="Set a user's password",
    body=PasswordSet,
    status=204,
    errors=(409,),
    description="`users:password:reset` over the user. The password policy (length, "
    "character classes, personal data, common passwords, history) applies.",
)
def set_password(call: Call, user_id: str) -> Reply:
    body: PasswordSet = call.body
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:password:reset")
        with _policy_conflict():
            users.set_password(ctx, user, body.password, temporary=body.temporary)
    return Reply(status=204)


class MfaResetOut(ApiModel):
    removed: int = Field(description="How many second factors were removed")


def _tell_mfa_reset(user: User, removed: list[str]) -> None:
    from flask_babel import lazy_gettext as _l

    from ..mailing import queue_mail

    queue_mail(user.email, "mfa_reset", _l("Your second factors were reset"), user=user)


@operation(
    "POST",
    "/users/{user_id}/reset-mfa",
    tag=TAG,
    summary="Remove every second factor of a user",
    response=MfaResetOut,
    description="`users:mfa:reset` over the user (after identity proofing: they lost their "
    "factors). Remembered devices go too; the user is told by e-mail and sets up new "
    "factors at the next sign-in.",
)
def reset_mfa(call: Call, user_id: str) -> Reply:
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:mfa:reset")
        removed = users.reset_mfa(ctx, user, notify=_tell_mfa_reset)
    return Reply(body=MfaResetOut(removed=removed))


# --- sessions ------------------------------------------------------------------------------------


class SessionOut(ApiModel):
    id: str = Field(description="The public session id (OIDC sid), never the cookie value")
    created_at: datetime | None = Field(description="When the user signed in")
    ip: str | None = Field(description="The address they signed in from")
    user_agent: str | None = Field(description="Their browser")
    amr: str | None = Field(description="How the user signed in (pwd, otp, hwk...)")
    device: str = Field(description='Device name from the user agent ("Chrome 120 on Linux")')
    browser: str | None = Field(description="Browser and version, when known")
    os: str | None = Field(description="Operating system, when known")
    location: str = Field(
        description='Where the IP address is ([geoip] database), else "Unknown location"'
    )
    last_activity: datetime | None = Field(description="The last request in the session")


class SessionList(ApiModel):
    items: list[SessionOut] = Field(description="Live sessions, newest first")


class EndSessionsQuery(Strict):
    keep_offline: bool = Field(
        False, description="keep the user's offline refresh tokens (apps with offline access)"
    )


class SessionsEnded(ApiModel):
    ended: int = Field(description="How many sessions ended")


@operation(
    "GET",
    "/users/{user_id}/sessions",
    tag=TAG,
    summary="List a user's SSO sessions",
    response=SessionList,
    description="`users:accounts:read` over the user; newest first.",
)
def list_sessions(call: Call, user_id: str) -> Reply:
    with call.transaction() as ctx:
        user = users.get(ctx, user_id)
        found = manage_sessions.list_for_user(ctx, user, call.svc.sso_sessions)
    items = [_session_out(v) for v in session_views(call.svc.geoip, found)]
    return Reply(body=SessionList(items=items))


def _session_out(view: SessionView) -> SessionOut:
    s, device = view.session, view.device
    return SessionOut(
        id=s.id,
        created_at=s.created_at,
        ip=s.ip,
        user_agent=s.user_agent,
        amr=s.amr,
        device=str(device.name),
        browser=device.browser,
        os=device.os,
        location=view.location or "Unknown location",
        last_activity=s.last_seen,
    )


@operation(
    "DELETE",
    "/users/{user_id}/sessions",
    tag=TAG,
    summary="End every SSO session of a user (log out everywhere)",
    response=SessionsEnded,
    query=EndSessionsQuery,
    description="`users:sessions:revoke` over the user. Everywhere means everywhere: every SSO "
    "session, the refresh tokens issued in them and (unless `keep_offline=true`) the user's "
    "offline refresh tokens; OIDC clients get back-channel logout, SAML SPs a SOAP "
    "LogoutRequest or a front-channel one on the browser's next page.",
)
def end_sessions(call: Call, user_id: str) -> Reply:
    keep_offline = call.query.keep_offline
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:sessions:revoke")
        ended = manage_sessions.end_all(ctx, user, call.svc.sso_sessions, keep_offline=keep_offline)
    return Reply(body=SessionsEnded(ended=ended))


@operation(
    "DELETE",
    "/users/{user_id}/sessions/{session_id}",
    tag=TAG,
    summary="End one SSO session of a user",
    status=204,
    description="`users:sessions:revoke` over the user; the session by its public id (the "
    "`id` of the session list). Applications are told. 404 when the user has no live "
    "session of that id.",
)
def end_session(call: Call, user_id: str, session_id: str) -> Reply:
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:sessions:revoke")
        if not manage_sessions.end_one(ctx, user, call.svc.sso_sessions, session_id):
            raise NotFound("no such session")
    return Reply(status=204)


# --- roles and permissions ------------------------------------------------------------------


class RoleAssignmentOut(ApiModel):
    role: str = Field(description="Role name")
    client_id: str | None = Field(description="Set for a client's own role")
    scope_company: str | None = Field(description="Only over this company's users (slug)")
    scope_department_id: int | None = Field(description="Only over this department subtree")
    expires_at: datetime | None = Field(description="A temporary grant ends here")
    created_at: datetime | None = Field(description="When it was assigned")


class RoleAssignmentList(ApiModel):
    items: list[RoleAssignmentOut] = Field(description="Direct assignments, by role name")


def _assignment(ctx: Context, ur, role) -> RoleAssignmentOut:
    company = ctx.db.get(Company, ur.scope_company_id) if ur.scope_company_id else None
    return RoleAssignmentOut(
        role=role.name,
        client_id=role.client_id,
        scope_company=company.slug if company else None,
        scope_department_id=ur.scope_department_id,
        expires_at=ur.expires_at,
        created_at=ur.created_at,
    )


@operation(
    "GET",
    "/users/{user_id}/roles",
    tag=TAG,
    summary="List the roles assigned to a user",
    response=RoleAssignmentList,
    description="`users:roles:read` over the user: direct assignments (not through groups), "
    "with their delegation scope and expiry.",
)
def list_roles(call: Call, user_id: str) -> Reply:
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:roles:read")
        items = [_assignment(ctx, ur, r) for ur, r in users.role_assignments(ctx, user)]
    return Reply(body=RoleAssignmentList(items=items))


class RoleAssign(Exact):
    role: str = Field(
        min_length=1, max_length=200, pattern=_PLAIN, description="Role name (unknown: 404)"
    )
    client_id: str | None = Field(
        None, pattern=_PLAIN, max_length=255, description="For a client's own role"
    )
    scope_company: str | None = Field(
        None,
        pattern=_PLAIN,
        max_length=64,
        description="Delegation: only over this company (slug or id)",
    )
    scope_department: str | None = Field(
        None,
        max_length=1000,
        pattern=_PLAIN,
        description='Delegation: only over this department subtree (id or "slug/Dept/Sub")',
    )
    expires_at: AwareDatetime | None = Field(
        None, description="A temporary grant: it ends at this time (RFC 3339; past: 409)"
    )

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        try:
            return value.astimezone(UTC) if value is not None else None
        except OverflowError:
            raise ValueError("out of range") from None


@operation(
    "POST",
    "/users/{user_id}/roles",
    tag=TAG,
    summary="Assign a role to a user",
    body=RoleAssign,
    response=RoleAssignmentOut,
    errors=(409,),
    description="`users:roles:assign` over the user, and every permission the role carries "
    "(nobody hands out more than they hold). Assigning again (same scope) updates the expiry.",
)
def assign_role(call: Call, user_id: str) -> Reply:
    body: RoleAssign = call.body
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:roles:assign")
        d = ctx.directory
        try:
            role = d.role_by_name(body.role, body.client_id)
        except NotFound as exc:
            raise NotFound(f"role: {exc}") from None
        try:
            company = d.company(body.scope_company) if body.scope_company else None
        except NotFound as exc:
            raise NotFound(f"scope_company: {exc}") from None
        try:
            department = d.department(body.scope_department) if body.scope_department else None
        except NotFound as exc:
            raise NotFound(f"scope_department: {exc}") from None
        try:
            row = users.assign_role(
                ctx,
                user,
                role,
                scope_company=company,
                scope_department=department,
                expires_at=body.expires_at,
            )
        except ValidationError as exc:  # both scopes, a scoped client role, a past expiry
            raise Conflict(str(exc)) from None
        out = _assignment(ctx, row, role)
    return Reply(body=out)


class RoleRef(Exact):
    client_id: str | None = Field(
        None, pattern=_PLAIN, max_length=255, description="For a client's own role"
    )


@operation(
    "DELETE",
    "/users/{user_id}/roles/{role}",
    tag=TAG,
    summary="Take a role away from a user",
    query=RoleRef,
    status=204,
    description="`users:roles:assign` over the user; every scope of the assignment goes. "
    "404 when the user does not have the role.",
)
def remove_role(call: Call, user_id: str, role: str) -> Reply:
    q: RoleRef = call.query
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:roles:assign")
        found = ctx.directory.role_by_name(role, q.client_id)
        if not users.remove_role(ctx, user, found):
            raise NotFound(f"the user does not have the role {role!r}")
    return Reply(status=204)


class PermissionsQuery(Exact):
    explain: str | None = Field(
        None,
        max_length=200,
        pattern=core_rbac.CHECK_RE.pattern,
        description="A permission (module:feature:action): also say every path that grants it",
    )


class ScopedPermission(ApiModel):
    permission: str = Field(description="module:feature:action (wildcards kept)")
    scope: Literal["company", "department"] = Field(description="Where it applies")
    scope_id: int = Field(description="The company's or the department's id")


class Explanation(ApiModel):
    permission: str = Field(description="The permission asked about")
    granted: bool = Field(description="The user holds it (everywhere)")
    paths: list[str] = Field(description="One line per path: group -> role -> permission")


class PermissionsOut(ApiModel):
    permissions: list[str] = Field(description="Held everywhere (wildcards kept)")
    scoped: list[ScopedPermission] = Field(description="Held only over a company / subtree")
    explain: Explanation | None = Field(None, description="With ?explain=: why (not)")


@operation(
    "GET",
    "/users/{user_id}/permissions",
    tag=TAG,
    summary="A user's effective permissions",
    query=PermissionsQuery,
    response=PermissionsOut,
    description="`users:roles:read` over the user: through roles, groups, composites and "
    "permission groups, expired grants left out. `?explain=users:accounts:read` adds the "
    "paths that grant that permission.",
)
def user_permissions(call: Call, user_id: str) -> Reply:
    q: PermissionsQuery = call.query
    with call.transaction() as ctx:
        user = users.get(ctx, user_id, "users:roles:read")
        grants = users.permissions(ctx, user)
        explanation = None
        if q.explain is not None:
            paths = users.explain(ctx, user, q.explain)
            explanation = Explanation(permission=q.explain, granted=bool(paths), paths=paths)
    return Reply(
        body=PermissionsOut(
            permissions=sorted(grants.everywhere),
            scoped=[
                ScopedPermission(permission=p, scope=k, scope_id=s)
                for p, k, s in sorted(grants.scoped)
            ],
            explain=explanation,
        )
    )
