"""Who may do what: one table of (action → roles), and every route's action.

The JSON API and the staff pages ask this module alone (publisher.web.policy_middleware
checks every request against ROUTES before its handler runs; pages ask `may` to offer
only the buttons that will work), and the core's own checks (publisher.workflow) read
the same table. A route that is not in ROUTES is refused (403) — tests enumerate the
app's routes and check each against this table for every role.

Decisions (issue 16):

- boards: every member of staff reads boards and packs; only admins add or edit a board
  (its operator's phone and email decide where the posting links go, and who can
  confirm a posting); editors and admins record postings.
- items: editors and admins write (create, edit, attachments, previews of a draft) and
  submit; reviewers and admins approve, reject and withdraw; anyone on staff retries
  failed deliveries (it changes no content and no recipient).
- users and residents' subscriptions: admins only.
- annual-report entries and publishing it, the requests register, the working-day
  calendar: editors and admins (reviewers read them).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from publisher.models import Role


class Do(StrEnum):
    """A guarded action (or the two unguarded kinds: public, any staff)."""

    PUBLIC = "public"  #: anyone, signed in or not (publisher.web.auth.PUBLIC_ROUTES)
    STAFF = "staff"  #: any signed-in member of staff: reading, one's own session
    #: a staff session that may still owe a log-in step (the second factor, its
    #: enrolment): the staff gate lets only the page of that step through, and the page
    #: checks the session itself (publisher.web.ui.totp_pages)
    SESSION = "session"
    ITEM_EDIT = "items.edit"  #: create and edit items, attachments, previews of drafts
    ITEM_SUBMIT = "items.submit"
    ITEM_REOPEN = "items.reopen"
    ITEM_APPROVE = "items.approve"
    ITEM_REJECT = "items.reject"
    ITEM_WITHDRAW = "items.withdraw"
    ITEM_RETRY = "items.retry"  #: requeue an item's failed deliveries
    BOARD_EDIT = "boards.edit"  #: add a board, edit one (name, operator's phone / email …)
    BOARD_RECORD_POSTING = "boards.record_posting"
    USERS_ADMIN = "users.admin"
    SUBSCRIBERS_ADMIN = "subscribers.admin"  #: look up, export, erase residents
    REPORTS_EDIT = "reports.edit"  #: annual-report entries, publishing the report
    REQUESTS_REGISTER = "requests.register"  #: 依申请公开 register: add, pause, extend, close
    CALENDAR_EDIT = "calendar.edit"  #: the working-day calendar


_ALL = frozenset(Role)
_WRITERS = frozenset({Role.EDITOR, Role.ADMIN})
_REVIEWERS = frozenset({Role.REVIEWER, Role.ADMIN})
_ADMINS = frozenset({Role.ADMIN})

#: the roles that may do each action (PUBLIC: also the anonymous)
POLICY: Mapping[Do, frozenset[Role]] = {
    Do.PUBLIC: _ALL,
    Do.STAFF: _ALL,
    Do.SESSION: _ALL,
    Do.ITEM_EDIT: _WRITERS,
    Do.ITEM_SUBMIT: _WRITERS,
    Do.ITEM_REOPEN: _WRITERS,
    Do.ITEM_APPROVE: _REVIEWERS,
    Do.ITEM_REJECT: _REVIEWERS,
    Do.ITEM_WITHDRAW: _REVIEWERS,
    Do.ITEM_RETRY: _ALL,
    Do.BOARD_EDIT: _ADMINS,
    Do.BOARD_RECORD_POSTING: _WRITERS,
    Do.USERS_ADMIN: _ADMINS,
    Do.SUBSCRIBERS_ADMIN: _ADMINS,
    Do.REPORTS_EDIT: _WRITERS,
    Do.REQUESTS_REGISTER: _WRITERS,
    Do.CALENDAR_EDIT: _WRITERS,
}

#: every route of the app (method, canonical path) → the action it is. HEAD is GET.
ROUTES: Mapping[tuple[str, str], Do] = {
    # -- public: residents, callbacks, public pages (each checks its own token if any)
    ("GET", "/healthz"): Do.PUBLIC,
    ("GET", "/api/v1/openapi.json"): Do.PUBLIC,
    ("GET", "/items/{item_id}/attachments/{attachment_id}/{filename}"): Do.PUBLIC,
    ("GET", "/"): Do.PUBLIC,
    ("GET", "/items/{item_id}"): Do.PUBLIC,
    ("GET", "/feeds/{name}.{fmt}"): Do.PUBLIC,
    ("GET", "/metrics"): Do.PUBLIC,
    ("GET", "/sms/dlr"): Do.PUBLIC,
    ("GET", "/sms/inbound"): Do.PUBLIC,
    ("POST", "/sms/aliyun/report/{token}"): Do.PUBLIC,
    ("POST", "/api/v1/subscribers"): Do.PUBLIC,
    ("POST", "/api/v1/subscribers/verify"): Do.PUBLIC,
    ("GET", "/s/{code}"): Do.PUBLIC,
    ("GET", "/subscribe/confirm/{token}"): Do.PUBLIC,
    ("POST", "/subscribe/confirm/{token}"): Do.PUBLIC,
    ("GET", "/subscribe/manage/{token}"): Do.PUBLIC,
    ("POST", "/subscribe/manage/{token}"): Do.PUBLIC,
    ("GET", "/unsubscribe/{token}"): Do.PUBLIC,
    ("POST", "/unsubscribe/{token}"): Do.PUBLIC,
    ("GET", "/staff/login"): Do.PUBLIC,
    ("POST", "/staff/login"): Do.PUBLIC,
    # the second factor: a half-logged-in session (password right, code owed, or TOTP
    # enrolment owed) is no full staff session yet; these pages check it themselves
    ("GET", "/staff/login/code"): Do.SESSION,
    ("POST", "/staff/login/code"): Do.SESSION,
    ("GET", "/staff/totp"): Do.SESSION,
    ("POST", "/staff/totp/confirm"): Do.SESSION,
    # one's own password: any staff session, and one whose owed step is changing it
    ("GET", "/staff/password"): Do.SESSION,
    ("POST", "/staff/password"): Do.SESSION,
    ("GET", "/static/ui/{name}"): Do.PUBLIC,
    ("GET", "/items/{item_id}/board.pdf"): Do.PUBLIC,
    ("GET", "/boards/{board_id}/packs/{pack_id}"): Do.PUBLIC,
    ("GET", "/boards/{board_id}/packs/{pack_id}/confirm"): Do.PUBLIC,
    ("POST", "/boards/{board_id}/packs/{pack_id}/confirm"): Do.PUBLIC,
    ("GET", "/display"): Do.PUBLIC,
    ("GET", "/subscribe"): Do.PUBLIC,
    ("POST", "/subscribe/sms"): Do.PUBLIC,
    ("GET", "/subscribe/sms/code"): Do.PUBLIC,
    ("POST", "/subscribe/sms/verify"): Do.PUBLIC,
    ("POST", "/subscribe/email"): Do.PUBLIC,
    ("GET", "/subscribe/leave"): Do.PUBLIC,
    ("POST", "/subscribe/leave"): Do.PUBLIC,
    ("GET", "/subscribe/leave/code"): Do.PUBLIC,
    ("POST", "/subscribe/leave/verify"): Do.PUBLIC,
    # -- API: items
    ("POST", "/api/v1/items"): Do.ITEM_EDIT,
    ("GET", "/api/v1/items"): Do.STAFF,
    ("GET", "/api/v1/items/{item_id}"): Do.STAFF,
    ("PATCH", "/api/v1/items/{item_id}"): Do.ITEM_EDIT,
    ("POST", "/api/v1/items/{item_id}/submit"): Do.ITEM_SUBMIT,
    ("POST", "/api/v1/items/{item_id}/approve"): Do.ITEM_APPROVE,
    ("POST", "/api/v1/items/{item_id}/reject"): Do.ITEM_REJECT,
    ("POST", "/api/v1/items/{item_id}/withdraw"): Do.ITEM_WITHDRAW,
    ("GET", "/api/v1/items/{item_id}/audit"): Do.STAFF,
    ("POST", "/api/v1/items/{item_id}/attachments"): Do.ITEM_EDIT,
    ("GET", "/api/v1/items/{item_id}/attachments/{attachment_id}"): Do.STAFF,
    ("GET", "/api/v1/items/{item_id}/preview"): Do.STAFF,
    ("GET", "/api/v1/items/{item_id}/board.pdf"): Do.STAFF,
    ("GET", "/api/v1/items/{item_id}/deliveries"): Do.STAFF,
    ("POST", "/api/v1/items/{item_id}/deliveries/retry"): Do.ITEM_RETRY,
    # -- API: boards
    ("GET", "/api/v1/boards"): Do.STAFF,
    ("POST", "/api/v1/boards"): Do.BOARD_EDIT,
    ("GET", "/api/v1/boards/{board_id}"): Do.STAFF,
    ("PATCH", "/api/v1/boards/{board_id}"): Do.BOARD_EDIT,
    ("GET", "/api/v1/boards/{board_id}/packs"): Do.STAFF,
    ("GET", "/api/v1/boards/{board_id}/packs/{pack_id}/pdf"): Do.STAFF,
    ("POST", "/api/v1/boards/{board_id}/posted"): Do.BOARD_RECORD_POSTING,
    # -- API: clocks, register, reports
    ("GET", "/api/v1/calendar/{year}"): Do.STAFF,
    ("PUT", "/api/v1/calendar/{year}"): Do.CALENDAR_EDIT,
    ("GET", "/api/v1/items-due"): Do.STAFF,
    ("POST", "/api/v1/requests"): Do.REQUESTS_REGISTER,
    ("GET", "/api/v1/requests"): Do.STAFF,
    ("GET", "/api/v1/requests/{request_id}"): Do.STAFF,
    ("POST", "/api/v1/requests/{request_id}/pause"): Do.REQUESTS_REGISTER,
    ("POST", "/api/v1/requests/{request_id}/resume"): Do.REQUESTS_REGISTER,
    ("POST", "/api/v1/requests/{request_id}/extend"): Do.REQUESTS_REGISTER,
    ("POST", "/api/v1/requests/{request_id}/close"): Do.REQUESTS_REGISTER,
    ("GET", "/api/v1/reports/annual/{year}/entries"): Do.STAFF,
    ("PUT", "/api/v1/reports/annual/{year}/entries"): Do.REPORTS_EDIT,
    ("POST", "/api/v1/reports/annual/{year}/item"): Do.REPORTS_EDIT,
    ("GET", "/reports/annual/{year}"): Do.STAFF,
    # -- staff pages
    ("POST", "/staff/logout"): Do.STAFF,
    ("GET", "/staff/"): Do.STAFF,
    ("GET", "/staff"): Do.STAFF,
    ("GET", "/staff/review"): Do.STAFF,
    ("GET", "/staff/items/{item_id}/review"): Do.STAFF,
    ("POST", "/staff/items/{item_id}/approve"): Do.ITEM_APPROVE,
    ("POST", "/staff/items/{item_id}/reject"): Do.ITEM_REJECT,
    ("GET", "/staff/items/{item_id}"): Do.STAFF,
    ("GET", "/staff/items/{item_id}/progress"): Do.STAFF,
    ("POST", "/staff/items/{item_id}/retry"): Do.ITEM_RETRY,
    ("POST", "/staff/items/{item_id}/submit"): Do.ITEM_SUBMIT,
    ("POST", "/staff/items/{item_id}/withdraw"): Do.ITEM_WITHDRAW,
    ("GET", "/staff/items/new"): Do.ITEM_EDIT,
    ("POST", "/staff/items/new"): Do.ITEM_EDIT,
    ("GET", "/staff/items/{item_id}/edit"): Do.ITEM_EDIT,
    ("POST", "/staff/items/{item_id}/edit"): Do.ITEM_EDIT,
    ("POST", "/staff/preview"): Do.ITEM_EDIT,
    ("GET", "/staff/boards"): Do.STAFF,
    ("GET", "/staff/boards/{board_id}/packs/{pack_id}/pdf"): Do.STAFF,
    ("POST", "/staff/boards/{board_id}/packs/{pack_id}/posted"): Do.BOARD_RECORD_POSTING,
    ("GET", "/staff/boards/new"): Do.BOARD_EDIT,
    ("POST", "/staff/boards/new"): Do.BOARD_EDIT,
    ("GET", "/staff/boards/{board_id}/edit"): Do.BOARD_EDIT,
    ("POST", "/staff/boards/{board_id}/edit"): Do.BOARD_EDIT,
    ("GET", "/staff/admin/users"): Do.USERS_ADMIN,
    ("POST", "/staff/admin/users/disable"): Do.USERS_ADMIN,
    ("POST", "/staff/admin/users/password"): Do.USERS_ADMIN,
    ("POST", "/staff/admin/users/totp-reset"): Do.USERS_ADMIN,
    ("POST", "/staff/admin/users/add"): Do.USERS_ADMIN,
    ("POST", "/staff/admin/users/role"): Do.USERS_ADMIN,
    ("GET", "/staff/admin/subscribers"): Do.SUBSCRIBERS_ADMIN,
    ("POST", "/staff/admin/subscribers"): Do.SUBSCRIBERS_ADMIN,
    ("POST", "/staff/admin/subscribers/export"): Do.SUBSCRIBERS_ADMIN,
    ("POST", "/staff/admin/subscribers/erase"): Do.SUBSCRIBERS_ADMIN,
}


def may(role: Role | None, action: Do) -> bool:
    """Whether `role` (None: not signed in) may do `action`."""
    if action is Do.PUBLIC:
        return True
    return role is not None and role in POLICY[action]


def route_action(method: str, canonical: str) -> Do | None:
    """The action of a route (HEAD is GET); None: not in the table (refused)."""
    return ROUTES.get(("GET" if method == "HEAD" else method, canonical))


def public_routes() -> frozenset[tuple[str, str]]:
    """The routes anyone may call (publisher.web.auth.PUBLIC_ROUTES must be these)."""
    return frozenset(k for k, v in ROUTES.items() if v is Do.PUBLIC)
