"""Administration pages (admin role only): staff accounts and residents' data requests.

/staff/admin/users lists the accounts (never a password hash or a token), adds one and
changes a role with the CLI's rules (`publisher user add` / `user role`: a known role, a
password the policy accepts (security.login) or none, the store's rules for names; a new role ends
the user's sessions), disables one (its sessions and tokens end at once) and sets a new
password (which ends its sessions), and resets an account's two-step verification
(TOTP, publisher.totp: its secret and recovery codes go and its sessions end; the
reset is in the audit log). Each change is logged with who made it.
/staff/admin/subscribers looks a resident up by address and answers a PIPL request with
the same core functions as `publisher subscribers export` and `... erase`
(publisher.recipients.Recipients). The address a member of staff typed is never shown
again, logged or put in a URL: pages show it masked, and the export and erase forms carry
it sealed with the data key (AddressBox), as the store keeps it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from publisher.addresses import mask
from publisher.errors import ConfigError, Conflict, Forbidden, NotFound, ValidationFailed
from publisher.models import Role
from publisher.passwords import PasswordProblem
from publisher.policy import Do, may
from publisher.recipients import Recipient, Recipients, RecipientStatus
from publisher.store import schema as t
from publisher.web.keys import CONFIG, STORE
from publisher.web.problems import read_form
from publisher.web.ui import views, wording
from publisher.web.ui.compose import _staff
from publisher.web.ui.render import gettext_for, render
from publisher.web.ui.session import TOTP, current_session
from publisher.web.ui.views import N_

routes = web.RouteTableDef()
log = logging.getLogger("publisher.web.ui.admin")

MAX_FIELD = 1024
CHANNELS = ("sms", "email")
#: a sealed address travels with the export and erase forms; this marks its purpose
SEALED_PREFIX = "subscriber\x00"

RECIPIENT_STATUS_LABELS = {
    RecipientStatus.PENDING: N_("Waiting for confirmation"),
    RecipientStatus.ACTIVE: N_("Active"),
    RecipientStatus.UNSUBSCRIBED: N_("Unsubscribed"),
    RecipientStatus.SUPPRESSED: N_("Suppressed"),
}


def _check_admin(request: web.Request, action: Do = Do.USERS_ADMIN) -> None:
    """Refuse (403) unless publisher.policy lets the user's role do `action`."""
    if not may(current_session(request).user.role, action):
        raise Forbidden(gettext_for(request).gettext("Only administrators may use this page."))


def _field(form: Any, name: str, limit: int = MAX_FIELD) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


# -- staff accounts ---------------------------------------------------------------------


async def _users_page(
    request: web.Request,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
    new_user: dict[str, str] | None = None,
) -> web.Response:
    users = await request.app[STORE].list_users()
    me = current_session(request).user.name
    with_totp = await request.app[TOTP].enrolled_user_ids()
    return render(
        request,
        "admin_users.html",
        status=status,
        error=error,
        notice=notice,
        min_length=request.app[CONFIG].security.login.min_password_length,
        rows=[
            {
                "name": u.name,
                "role": views.tr(request, views.ROLE_LABELS.get(u.role.value, u.role.value)),
                "disabled": u.disabled,
                "has_password": u.has_password,
                "totp": u.id in with_totp,
                "me": u.name == me,
                "role_value": u.role.value,
            }
            for u in users
        ],
        roles=[(r.value, views.tr(request, views.ROLE_LABELS[r.value])) for r in Role],
        new_user=new_user or {"name": "", "role": Role.EDITOR.value},
    )


@routes.get("/staff/admin/users")
async def users(request: web.Request) -> web.Response:
    _check_admin(request)
    _ = gettext_for(request).gettext
    notice = None
    if request.query.get("disabled"):
        notice = _("The account is disabled; its sessions and API tokens have ended.")
    elif request.query.get("password"):
        notice = _("The password is set; the account's sessions have ended.")
    elif request.query.get("added"):
        notice = _("The account is added.")
    elif request.query.get("role"):
        notice = _("The role is changed; the account's sessions have ended.")
    elif request.query.get("totp"):
        notice = _("Two-step verification is reset; the account's sessions have ended.")
    return await _users_page(request, notice=notice)


@routes.post("/staff/admin/users/disable")
async def disable_user(request: web.Request) -> web.StreamResponse:
    _check_admin(request)
    _ = gettext_for(request).gettext
    form = await read_form(request)
    name = _field(form, "name", 64).strip()
    if name == current_session(request).user.name:
        return await _users_page(
            request, error=_("You cannot disable your own account."), status=409
        )
    try:
        await request.app[STORE].disable_user(name)
    except NotFound:
        return await _users_page(request, error=_("There is no such user."), status=404)
    log.info("user %r disabled by %r", name, current_session(request).user.name)
    raise web.HTTPSeeOther(f"{_staff(request)}/admin/users?disabled=1")


@routes.post("/staff/admin/users/password")
async def set_password(request: web.Request) -> web.StreamResponse:
    _check_admin(request)
    _ = gettext_for(request).gettext
    form = await read_form(request)
    name = _field(form, "name", 64).strip()
    password = _field(form, "password")
    found = await request.app[STORE].password_problems(name, password)
    if found:
        return await _users_page(request, error=_password_problem(request, found), status=422)
    try:
        await request.app[STORE].set_password(name, password)
    except NotFound:
        return await _users_page(request, error=_("There is no such user."), status=404)
    except ValidationFailed as exc:
        return await _users_page(request, error=wording.core_message(_, exc.detail), status=422)
    log.info("password of user %r set by %r", name, current_session(request).user.name)
    raise web.HTTPSeeOther(f"{_staff(request)}/admin/users?password=1")


def _password_problem(request: web.Request, found: list[PasswordProblem]) -> str:
    """The policy's first complaint about a password (security.login), in words."""
    return wording.password_problem(
        gettext_for(request).gettext,
        found[0].code,
        request.app[CONFIG].security.login.min_password_length,
    )


def _role(form: Any) -> Role | None:
    try:
        return Role(_field(form, "role", 32))
    except ValueError:
        return None


@routes.post("/staff/admin/users/add")
async def add_user(request: web.Request) -> web.StreamResponse:
    """`publisher user add NAME --role ROLE [--password-stdin]`, as a form."""
    _check_admin(request)
    _ = gettext_for(request).gettext
    form = await read_form(request)
    name = _field(form, "name", 200).strip()
    role = _role(form)
    password = _field(form, "password")
    typed = {"name": name, "role": role.value if role else Role.EDITOR.value}
    error = None
    if not name:
        error = _("Enter a user name.")
    elif role is None:
        error = _("Choose a role.")
    elif password and (found := await request.app[STORE].password_problems(name, password)):
        error = _password_problem(request, found)
    if error is not None or role is None:
        return await _users_page(request, error=error, status=422, new_user=typed)
    try:
        await request.app[STORE].add_user(name, role, password or None)
    except (ValidationFailed, Conflict) as exc:
        return await _users_page(
            request,
            error=wording.core_message(_, exc.detail),
            status=exc.status,
            new_user=typed,
        )
    log.info(
        "user %r added as %s%s by %r",
        name,
        role.value,
        " with a password" if password else "",
        current_session(request).user.name,
    )
    raise web.HTTPSeeOther(f"{_staff(request)}/admin/users?added=1")


@routes.post("/staff/admin/users/role")
async def change_role(request: web.Request) -> web.StreamResponse:
    """`publisher user role NAME ROLE`, as a form: the user's sessions end."""
    _check_admin(request)
    _ = gettext_for(request).gettext
    form = await read_form(request)
    name = _field(form, "name", 64).strip()
    role = _role(form)
    if role is None:
        return await _users_page(request, error=_("Choose a role."), status=422)
    if name == current_session(request).user.name:
        return await _users_page(request, error=_("You cannot change your own role."), status=409)
    try:
        await request.app[STORE].set_role(name, role)
    except NotFound:
        return await _users_page(request, error=_("There is no such user."), status=404)
    log.info("user %r given role %s by %r", name, role.value, current_session(request).user.name)
    raise web.HTTPSeeOther(f"{_staff(request)}/admin/users?role=1")


@routes.post("/staff/admin/users/totp-reset")
async def reset_totp(request: web.Request) -> web.StreamResponse:
    """`publisher user totp-reset NAME`, as a form: for a user who lost the phone and the
    recovery codes. Audited; the user's sessions end."""
    _check_admin(request)
    _ = gettext_for(request).gettext
    form = await read_form(request)
    name = _field(form, "name", 64).strip()
    me = current_session(request).user.name
    if name == me:
        return await _users_page(
            request, error=_("You cannot reset your own two-step verification."), status=409
        )
    try:
        await request.app[TOTP].reset(name, me)
    except NotFound:
        return await _users_page(request, error=_("There is no such user."), status=404)
    log.info("two-step verification of user %r reset by %r", name, me)
    raise web.HTTPSeeOther(f"{_staff(request)}/admin/users?totp=1")


# -- residents' data (PIPL requests) ----------------------------------------------------


def _recipients(request: web.Request) -> Recipients:
    return Recipients(request.app[STORE])


async def _consents(request: web.Request, recipient: Recipient) -> list[dict[str, str]]:
    async with request.app[STORE].read() as conn:
        rows = (
            await conn.execute(
                sa.select(t.consents)
                .where(t.consents.c.recipient_id == recipient.id)
                .order_by(t.consents.c.id)
            )
        ).all()
    return [
        {
            "given": views.local_time(request, c.given_at),
            "method": c.method,
            "source": c.source or "",
            "ended": views.local_time(request, c.ended_at),
            "ended_how": c.ended_how or "",
        }
        for c in rows
    ]


def _subscribers_page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    channel: str = "sms",
    found: dict[str, Any] | None = None,
) -> web.Response:
    return render(
        request,
        "admin_subscribers.html",
        status=status,
        error=error,
        notice=notice,
        channel=channel,
        channels=[(c, views.channel_label(request, c)) for c in CHANNELS],
        found=found,
    )


@routes.get("/staff/admin/subscribers")
async def subscribers(request: web.Request) -> web.Response:
    _check_admin(request, Do.SUBSCRIBERS_ADMIN)
    _ = gettext_for(request).gettext
    notice = None
    erased = request.query.get("erased", "")
    if erased.isdigit():
        notice = _("Erased %(num)s subscription(s); the address stays on the suppression list.") % {
            "num": erased
        }
    return _subscribers_page(request, notice=notice)


@routes.post("/staff/admin/subscribers")
async def lookup(request: web.Request) -> web.Response:
    """Look a resident up: POST, so that the address is never in a URL or an access log."""
    _check_admin(request, Do.SUBSCRIBERS_ADMIN)
    _ = gettext_for(request).gettext
    form = await read_form(request)
    channel = _field(form, "channel")
    address = _field(form, "address", 320)
    if channel not in CHANNELS:
        return _subscribers_page(request, status=422, error=_("Choose SMS or email."))
    recipients = _recipients(request)
    try:
        recipient = await recipients.get(channel, address)
    except ValidationFailed:
        message = (
            _("That is not a valid mobile number.")
            if channel == "sms"
            else _("That is not a valid email address.")
        )
        return _subscribers_page(request, status=422, error=message, channel=channel)
    except NotFound:
        return _subscribers_page(
            request, status=404, error=_("No subscriber has that address."), channel=channel
        )
    log.info(
        "%s subscriber %s looked up by %r",
        channel,
        recipient.masked,
        current_session(request).user.name,
    )
    found = {
        "channel": views.channel_label(request, recipient.channel),
        "masked": recipient.masked,
        "status": views.tr(request, RECIPIENT_STATUS_LABELS[recipient.status]),
        "suppressed": await recipients.is_suppressed(channel, recipient.address),
        "categories": ", ".join(recipient.categories),
        "created": views.local_time(request, recipient.created_at),
        "consents": await _consents(request, recipient),
        "sealed": recipients.box.seal(SEALED_PREFIX + recipient.address),
    }
    return _subscribers_page(request, channel=channel, found=found)


def _unseal(request: web.Request, recipients: Recipients, form: Any) -> str:
    """The address an export or erase form carries; a form that was tampered with or sealed
    with another key is refused (400)."""
    try:
        opened = recipients.box.open(_field(form, "subscriber", 2048))
    except ConfigError:
        opened = ""
    if not opened.startswith(SEALED_PREFIX):
        raise ValidationFailed(
            gettext_for(request).gettext("The form is out of date: look the address up again.")
        )
    return opened[len(SEALED_PREFIX) :]


@routes.post("/staff/admin/subscribers/export")
async def export(request: web.Request) -> web.StreamResponse:
    """What `publisher subscribers export` prints, as a JSON download."""
    _check_admin(request, Do.SUBSCRIBERS_ADMIN)
    _ = gettext_for(request).gettext
    recipients = _recipients(request)
    try:
        address = _unseal(request, recipients, await read_form(request))
    except ValidationFailed as exc:
        return _subscribers_page(request, status=400, error=exc.detail)
    data = await recipients.export(address)
    if not data["subscriptions"]:
        return _subscribers_page(request, status=404, error=_("No subscriber has that address."))
    log.info(
        "data of subscriber %s exported by %r", mask(address), current_session(request).user.name
    )
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, indent=2),
        content_type="application/json",
        charset="utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="subscriber-export.json"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@routes.post("/staff/admin/subscribers/erase")
async def erase(request: web.Request) -> web.StreamResponse:
    """What `publisher subscribers erase` does: the address's data goes, its suppression stays."""
    _check_admin(request, Do.SUBSCRIBERS_ADMIN)
    _ = gettext_for(request).gettext
    recipients = _recipients(request)
    form = await read_form(request)
    try:
        address = _unseal(request, recipients, form)
    except ValidationFailed as exc:
        return _subscribers_page(request, status=400, error=exc.detail)
    if form.get("confirm") != "on":
        return _subscribers_page(
            request,
            status=422,
            error=_("Tick the box to confirm the erasure; nothing was erased."),
        )
    erased = await recipients.erase(address)
    if erased == 0:
        return _subscribers_page(request, status=404, error=_("No subscriber has that address."))
    log.info(
        "%d subscription(s) of %s erased by %r",
        erased,
        mask(address),
        current_session(request).user.name,
    )
    raise web.HTTPSeeOther(f"{_staff(request)}/admin/subscribers?erased={erased}")
