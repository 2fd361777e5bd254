"""``/api/v1/reports/...``: the compliance reports (``idp.manage.reports``; ``docs/reports.md``).
Each report answers JSON, or with ``format=csv|xlsx`` a download of every row (paging
ignored). Access reviews: start, decide per holder, sign off, export as evidence."""

from __future__ import annotations

import tempfile
from datetime import date, datetime
from typing import Literal

from flask import Response
from pydantic import ConfigDict, Field
from werkzeug.wsgi import FileWrapper

from ...errors import NotFound
from ...manage import reports
from ...manage.user_sheet import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE
from .common import ApiModel, Page, PageQuery, Strict
from .framework import Call, Reply, operation
from .shapes import Id

TAG = "reports"
FORMATS = ("application/json", CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE)
Format = Literal["json", "csv", "xlsx"]
_PLAIN = r"^[^\x00-\x1f\x7f]*$"


class FilterQuery(PageQuery):
    # As the user list's filters: a value is judged as sent (a stripped "\x0b" would pass the
    # pattern the document states).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    format: Format = Field("json", description="json (one page), or csv / xlsx (every row)")
    company: str | None = Field(
        None, max_length=64, pattern=_PLAIN, description="Company slug or id"
    )
    department: str | None = Field(
        None, max_length=1000, pattern=_PLAIN, description="Department id or path, with its subtree"
    )
    group: str | None = Field(
        None, max_length=1000, pattern=_PLAIN, description="Group path, with its subgroups"
    )

    def filt(self) -> reports.UserFilter:
        return reports.UserFilter(self.company, self.department, self.group)


def _download(call: Call, report: str, fmt: str, **params) -> Reply:
    """The whole report as a file, written before the answer starts (a refusal is still a
    problem+json)."""
    out = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    try:
        with call.transaction() as ctx:
            reports.export(ctx, report, fmt, out, **params)
        size = out.tell()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    stamp = call.svc.clock.utcnow().strftime("%Y%m%d-%H%M%S")
    media = CSV_MEDIA_TYPE + "; charset=utf-8" if fmt == "csv" else XLSX_MEDIA_TYPE
    resp = Response(
        FileWrapper(out, 64 * 1024), mimetype=None, content_type=media, direct_passthrough=True
    )
    resp.headers["Content-Length"] = str(size)
    resp.headers["Content-Disposition"] = f'attachment; filename="{report}-{stamp}.{fmt}"'
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.call_on_close(out.close)
    return Reply(raw=resp)


# --- users without MFA ---------------------------------------------------------------------------


class NoMfaOut(ApiModel):
    id: str = Field(description="The user's uuid")
    username: str
    display_name: str | None
    email: str | None
    company: str | None
    department: str | None
    created_at: datetime | None
    last_login_at: datetime | None
    mfa_required: bool = Field(description="The MFA policy asks them for a second factor")
    required_by: list[str] = Field(description='The rules that ask ("user", "everyone", ...)')
    grace_until: datetime | None = Field(description="End of their grace period, if any")
    in_grace: bool


class NoMfaPage(Page[NoMfaOut]):
    pass


@operation(
    "GET",
    "/reports/users-without-mfa",
    tag=TAG,
    summary="Active users without a second factor",
    query=FilterQuery,
    response=NoMfaPage,
    produces=FORMATS,
    description="`reports:compliance:read`. Active accounts with no second factor enrolled, "
    "filtered like the user list, with what the MFA policy asks of them.",
)
def users_without_mfa(call: Call) -> Reply:
    q: FilterQuery = call.query
    if q.format != "json":
        return _download(
            call,
            "users-without-mfa",
            q.format,
            company=q.company,
            department=q.department,
            group=q.group,
        )
    with call.transaction() as ctx:
        rows, total = reports.users_without_mfa(ctx, q.filt(), page=q.page, per_page=q.per_page)
    items = [
        NoMfaOut(
            id=r.uuid,
            username=r.username,
            display_name=r.display_name,
            email=r.email,
            company=r.company,
            department=r.department,
            created_at=r.created_at,
            last_login_at=r.last_login_at,
            mfa_required=r.required,
            required_by=list(r.reasons),
            grace_until=r.grace_until,
            in_grace=r.in_grace,
        )
        for r in rows
    ]
    return Reply(body=NoMfaPage(items=items, total=total, page=q.page, per_page=q.per_page))


# --- dormant accounts ----------------------------------------------------------------------------


class DormantQuery(FilterQuery):
    days: int = Field(90, ge=1, le=reports.MAX_DAYS, description="No sign-in for this many days")
    kind: Literal["inactive", "never"] = Field(
        "inactive",
        description="inactive: signed in before, not since; never: made before the cutoff and "
        "never signed in",
    )


class DormantOut(ApiModel):
    id: str
    username: str
    display_name: str | None
    email: str | None
    company: str | None
    department: str | None
    created_at: datetime | None
    last_login_at: datetime | None
    idle_days: int


class DormantPage(Page[DormantOut]):
    days: int
    kind: str


@operation(
    "GET",
    "/reports/dormant-accounts",
    tag=TAG,
    summary="Active accounts without a sign-in for N days",
    query=DormantQuery,
    response=DormantPage,
    produces=FORMATS,
    description="`reports:compliance:read`. Deactivate the ones you choose with "
    '`POST /api/v1/users/batch` (`"action": "deactivate"`).',
)
def dormant_accounts(call: Call) -> Reply:
    q: DormantQuery = call.query
    if q.format != "json":
        return _download(
            call,
            "dormant-accounts",
            q.format,
            days=q.days,
            kind=q.kind,
            company=q.company,
            department=q.department,
            group=q.group,
        )
    with call.transaction() as ctx:
        rows, total = reports.dormant_accounts(
            ctx, q.days, q.kind, q.filt(), page=q.page, per_page=q.per_page
        )
    items = [
        DormantOut(
            id=r.uuid,
            username=r.username,
            display_name=r.display_name,
            email=r.email,
            company=r.company,
            department=r.department,
            created_at=r.created_at,
            last_login_at=r.last_login_at,
            idle_days=r.idle_days,
        )
        for r in rows
    ]
    return Reply(
        body=DormantPage(
            items=items, total=total, page=q.page, per_page=q.per_page, days=q.days, kind=q.kind
        )
    )


# --- privileged accounts -------------------------------------------------------------------------


class ReportQuery(PageQuery):
    format: Format = Field("json", description="json (one page), or csv / xlsx (every row)")


class PrivilegedOut(ApiModel):
    id: str
    username: str
    display_name: str | None
    status: str
    mfa_enrolled: bool
    last_login_at: datetime | None
    permissions: list[str] = Field(
        description='Administrative grants ("(in company #3)": delegated)'
    )
    granted_through: list[str] = Field(description="Each path of a grant")


class PrivilegedPage(Page[PrivilegedOut]):
    pass


@operation(
    "GET",
    "/reports/privileged-accounts",
    tag=TAG,
    summary="Users holding an administrative permission",
    query=ReportQuery,
    response=PrivilegedPage,
    produces=FORMATS,
    description="`reports:compliance:read`. Directly, through groups, composite roles, "
    "permission groups or delegated (scoped) assignments, with the path of each grant.",
)
def privileged_accounts(call: Call) -> Reply:
    q: ReportQuery = call.query
    if q.format != "json":
        return _download(call, "privileged-accounts", q.format)
    with call.transaction() as ctx:
        rows, total = reports.privileged_accounts(ctx, page=q.page, per_page=q.per_page)
    items = [
        PrivilegedOut(
            id=r.uuid,
            username=r.username,
            display_name=r.display_name,
            status=r.status,
            mfa_enrolled=r.mfa,
            last_login_at=r.last_login_at,
            permissions=r.permissions,
            granted_through=r.paths,
        )
        for r in rows
    ]
    return Reply(body=PrivilegedPage(items=items, total=total, page=q.page, per_page=q.per_page))


# --- failed logins -------------------------------------------------------------------------------


class TrendQuery(Strict):
    format: Format = Field("json", description="json, or csv / xlsx of one part")
    days: int = Field(30, ge=1, le=reports.MAX_TREND_DAYS, description="Days back, today included")
    top: int = Field(10, ge=1, le=100, description="How many addresses and accounts")
    part: Literal["days", "addresses", "accounts"] = Field(
        "days", description="Which table a csv / xlsx download holds"
    )


class DayOut(ApiModel):
    day: date
    total: int
    by_reason: dict[str, int]


class CountOut(ApiModel):
    key: str = Field(description="The address, or the account's uuid")
    username: str | None = None
    failures: int


class TrendOut(ApiModel):
    start: date
    total: int
    days: list[DayOut]
    reasons: dict[str, int]
    addresses: list[CountOut]
    accounts: list[CountOut]


@operation(
    "GET",
    "/reports/failed-logins",
    tag=TAG,
    summary="Failed sign-ins per day, by reason, top addresses and accounts",
    query=TrendQuery,
    response=TrendOut,
    produces=FORMATS,
    description="`reports:compliance:read`. From the audit rows of failed sign-ins (UTC days). "
    "Reasons: " + ", ".join(reports.FAILURE_REASONS) + ".",
)
def failed_logins(call: Call) -> Reply:
    q: TrendQuery = call.query
    if q.format != "json":
        return _download(call, "failed-logins", q.format, days=q.days, top=q.top, part=q.part)
    with call.transaction() as ctx:
        t = reports.failed_logins(ctx, q.days, q.top)
    return Reply(
        body=TrendOut(
            start=t.start,
            total=t.total,
            days=[DayOut(day=d.day, total=d.total, by_reason=d.by_reason) for d in t.days],
            reasons=t.reasons,
            addresses=[CountOut(key=c.key, failures=c.count) for c in t.addresses],
            accounts=[CountOut(key=c.key, username=c.label, failures=c.count) for c in t.accounts],
        )
    )


# --- access reviews ------------------------------------------------------------------------------


class ReviewIn(Strict):
    kind: Literal["role", "group"]
    id: Id = Field(description="The role's or group's id")
    title: str | None = Field(None, max_length=200)


class ReviewOut(ApiModel):
    id: int
    kind: str
    subject: str = Field(description="The role's name or the group's path")
    title: str | None
    created_by: str | None
    created_at: datetime
    holders: int
    decided: int
    revoked: int
    signed_off_by: str | None
    signed_off_at: datetime | None


class ReviewPage(Page[ReviewOut]):
    pass


class ItemOut(ApiModel):
    id: int
    user_id: str
    username: str
    grant: str
    decision: str | None
    decided_by: str | None
    decided_at: datetime | None
    comment: str | None


class ItemPage(Page[ItemOut]):
    review: ReviewOut


class DecisionIn(Strict):
    decision: Literal["confirm", "revoke"]
    comment: str | None = Field(None, max_length=1000)


def _review_out(v: reports.ReviewView) -> ReviewOut:
    r = v.review
    return ReviewOut(
        id=r.id,
        kind=r.kind,
        subject=r.subject,
        title=r.title,
        created_by=r.created_by_name or r.created_by,
        created_at=r.created_at,
        holders=v.items,
        decided=v.decided,
        revoked=v.revoked,
        signed_off_by=r.signed_off_by_name or r.signed_off_by,
        signed_off_at=r.signed_off_at,
    )


def _item_out(i) -> ItemOut:
    return ItemOut(
        id=i.id,
        user_id=i.user_uuid,
        username=i.username,
        grant=i.grant,
        decision=i.decision,
        decided_by=i.decided_by_name or i.decided_by,
        decided_at=i.decided_at,
        comment=i.comment,
    )


@operation(
    "GET",
    "/reports/access-reviews",
    tag=TAG,
    summary="List access reviews, newest first",
    query=PageQuery,
    response=ReviewPage,
    description="`reports:compliance:read`.",
)
def list_reviews(call: Call) -> Reply:
    q: PageQuery = call.query
    with call.transaction() as ctx:
        rows, total = reports.list_reviews(ctx, page=q.page, per_page=q.per_page)
        items = [_review_out(v) for v in rows]
    return Reply(body=ReviewPage(items=items, total=total, page=q.page, per_page=q.per_page))


@operation(
    "POST",
    "/reports/access-reviews",
    tag=TAG,
    summary="Start an access review of a role's or a group's holders",
    body=ReviewIn,
    response=ReviewOut,
    status=201,
    errors=(404,),
    description="`reports:reviews:manage`. The holders are taken as they are now.",
)
def create_review(call: Call) -> Reply:
    b: ReviewIn = call.body
    with call.transaction() as ctx:
        review = reports.create_review(ctx, b.kind, b.id, title=b.title)
        out = _review_out(reports.get_review(ctx, review.id))
    return Reply(
        status=201, body=out, headers={"Location": f"/api/v1/reports/access-reviews/{out.id}"}
    )


@operation(
    "GET",
    "/reports/access-reviews/{review_id}",
    tag=TAG,
    summary="An access review with a page of its holders (or all of them as CSV / XLSX)",
    query=ReportQuery,
    response=ItemPage,
    produces=FORMATS,
    description="`reports:compliance:read`. The download is the review's evidence: each "
    "decision with its reviewer, time and comment, and the sign-off.",
)
def read_review(call: Call, review_id: str) -> Reply:
    q: ReportQuery = call.query
    rid = _id(review_id)
    if q.format != "json":
        return _download(call, "access-review", q.format, review_id=rid)
    with call.transaction() as ctx:
        view = reports.get_review(ctx, rid)
        items, total = reports.review_items(ctx, rid, page=q.page, per_page=q.per_page)
        body = ItemPage(
            review=_review_out(view),
            items=[_item_out(i) for i in items],
            total=total,
            page=q.page,
            per_page=q.per_page,
        )
    return Reply(body=body)


@operation(
    "POST",
    "/reports/access-reviews/{review_id}/items/{item_id}",
    tag=TAG,
    summary="Confirm or revoke one holder's grant",
    body=DecisionIn,
    response=ItemOut,
    errors=(404, 409),
    description="`reports:reviews:manage` (a revocation also `users:roles:assign` / "
    "`users:groups:assign` over the holder: the grant is removed now, audited). Your own "
    "grant: 403. A decided holder or a signed-off review: 409, nothing changes.",
)
def decide(call: Call, review_id: str, item_id: str) -> Reply:
    b: DecisionIn = call.body
    with call.transaction() as ctx:
        item = reports.decide(ctx, _id(review_id), _id(item_id), b.decision, b.comment)
        out = _item_out(item)
    return Reply(body=out)


@operation(
    "POST",
    "/reports/access-reviews/{review_id}/sign-off",
    tag=TAG,
    summary="Sign the review off (every holder decided); it is final afterwards",
    response=ReviewOut,
    errors=(404, 409),
    description="`reports:reviews:manage`.",
)
def sign_off(call: Call, review_id: str) -> Reply:
    with call.transaction() as ctx:
        out = _review_out(reports.sign_off(ctx, _id(review_id)))
    return Reply(body=out)


def _id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise NotFound(f"no such id {text!r}")
    return int(text)
