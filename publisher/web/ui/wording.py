"""The core's own words, said again in the UI's language.

The core (publisher.content, the store, the workflow) and pydantic say what is wrong in
English, for the API's problem documents and the CLI, whose readers are integrators and
operators. A person on a staff or resident page reads the same facts through the gettext
catalogue: the pydantic error types, the core's ValidationFailed / Conflict messages,
the audit trail's action names and actors, personal-data labels and sizes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic_core import ErrorDetails

from publisher.models import ItemStatus

__all__ = [
    "ACTION_LABELS",
    "action_label",
    "actor_label",
    "core_message",
    "field_label",
    "password_problem",
    "pydantic_message",
    "size_text",
]


def N_(message: str) -> str:
    """Marks a string for extraction; it is translated where it is shown."""
    return message


Translate = Callable[[str], str]

#: the audit trail's action names (publisher.store.sql) in words
ACTION_LABELS: Mapping[str, str] = {
    "create": N_("Created"),
    "import": N_("Imported"),
    "edit": N_("Edited"),
    "revise": N_("Correction started"),
    "reopen": N_("Reopened"),
    "attach": N_("Attachment added"),
    "submit": N_("Submitted for review"),
    "approve": N_("Approved in review"),
    "reject": N_("Returned"),
    "schedule": N_("Scheduling"),
    "publish": N_("Publication"),
    "expire": N_("Expiry"),
    "withdraw": N_("Withdrawal"),
    "login": N_("Logged in"),
    "login_failed": N_("Failed log-in"),
    "reauth": N_("Password confirmed"),
    "login_locked": N_("Log-ins locked"),
    "login_throttled": N_("Log-ins slowed down"),
}
#: actors that are not people
ACTOR_LABELS: Mapping[str, str] = {"system": N_("System"), "cli": N_("Command line")}

#: field names as the core writes them (item fields, users, reasons)
FIELD_LABELS: Mapping[str, str] = {
    "title": N_("Title"),
    "summary": N_("Summary"),
    "body": N_("Body"),
    "format": N_("Body format"),
    "category": N_("Category"),
    "agency": N_("Issuing agency"),
    "doc_no": N_("Document number"),
    "written_at": N_("Date written"),
    "disclosure": N_("Disclosure"),
    "disclosure_reason": N_("Reason for not disclosing proactively"),
    "channels": N_("Channels"),
    "publish_at": N_("Publish at"),
    "expires_at": N_("Expires at"),
    "urgent": N_("Urgent"),
    "related": N_("Related items"),
    "attachments": N_("Attachments"),
    "correction_note": N_("Correction note"),
    "valid_from": N_("Valid from"),
    "valid_until": N_("Valid until"),
    "repealed_on": N_("Repealed on"),
    "legal_kind": N_("Legal kind"),
    "password": N_("Password"),
    "reason": N_("Reason"),
    "role": N_("Role"),
    "frequency": N_("Frequency"),
    "name": N_("User name"),
}

STATUS_WORDS: Mapping[str, str] = {
    ItemStatus.DRAFT.value: N_("Draft"),
    ItemStatus.IN_REVIEW.value: N_("In review"),
    ItemStatus.REJECTED.value: N_("Rejected"),
    ItemStatus.APPROVED.value: N_("Approved"),
    ItemStatus.SCHEDULED.value: N_("Scheduled"),
    ItemStatus.PUBLISHED.value: N_("Published"),
    ItemStatus.EXPIRED.value: N_("Expired"),
    ItemStatus.WITHDRAWN.value: N_("Withdrawn"),
}
ACTION_WORDS: Mapping[str, str] = {
    "submit": N_("submit it for review"),
    "approve": N_("approve it"),
    "reject": N_("return it"),
    "reopen": N_("reopen it"),
    "schedule": N_("schedule it"),
    "publish": N_("publish it"),
    "expire": N_("let it expire"),
    "withdraw": N_("withdraw it"),
}

_ANY = r"'?(?P<value>.*?)'?"
#: (pattern the core's English detail matches, what the UI says instead); the groups
#: fill the placeholders; `field` is shown as its label, `status` and `action` in words
CORE_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern + r"\Z", re.S), message)
    for pattern, message in (
        (r"must not be blank", N_("must not be blank")),
        (r"(?P<field>\w+): cannot be null", N_("%(field)s: must not be blank")),
        (
            r"(?P<field>\w+): year (?P<year>-?\d+) is outside 1900–2200",
            N_("%(field)s: the year %(year)s is outside 1900–2200"),
        ),
        (
            r"categor(?:y|ies): unknown category '(?P<value>[^']*)'.*",
            N_("Category: there is no category %(value)s"),
        ),
        (
            r"body: (?P<n>\d+) characters, more than the (?P<max>\d+) allowed",
            N_("Body: %(n)s characters, more than the %(max)s allowed"),
        ),
        (
            r"disclosure_reason: required when disclosure is .*",
            N_(
                "Reason for not disclosing proactively: required unless the item is disclosed "
                "proactively"
            ),
        ),
        (r"expires_at: must be after publish_at", N_("Expires at: must be after Publish at")),
        (
            r"(?P<field>\w+): only for an item with a legal_kind",
            N_("%(field)s: only for a regulation or normative document"),
        ),
        (r"(?P<field>\w+): before valid_from", N_("%(field)s: before Valid from")),
        (
            r"related: the same relation appears twice",
            N_("Related items: the same relation appears twice"),
        ),
        (
            r"related: an item cannot relate to itself",
            N_("Related items: an item cannot relate to itself"),
        ),
        (r"related: no item with id " + _ANY, N_("Related items: there is no item %(value)s")),
        (
            r"correction_note: only for edits of a published item",
            N_("Correction note: only for a correction of a published item"),
        ),
        (
            r"password: at least (?P<value>\d+) characters",
            N_("Password: at least %(value)s characters"),
        ),
        (r"password: a well-known password", N_("Password: a well-known password")),
        (
            r"password: too easy to guess .*",
            N_("Password: too easy to guess; use a longer phrase of several unrelated words"),
        ),
        (
            r"reason: a rejection needs a reason the author can act on",
            N_("Give a reason for the rejection."),
        ),
        (
            r"user name " + _ANY + r": 1–64 printable characters, no spaces",
            N_("User name %(value)s: 1–64 printable characters, no spaces"),
        ),
        (r"user name " + _ANY + r" is reserved", N_("User name %(value)s is reserved")),
        (r"user " + _ANY + r" already exists", N_("User %(value)s already exists")),
        (r"user " + _ANY + r" is disabled", N_("User %(value)s is disabled")),
        (r"no user named " + _ANY, N_("There is no user %(value)s")),
        (
            r"attachment " + _ANY + r" is larger than (?P<bytes>\d+) bytes .*",
            N_("Attachment %(value)s is larger than %(size)s, the most a file may be"),
        ),
        (r"attachment " + _ANY + r" is empty", N_("Attachment %(value)s is empty")),
        (
            r"attachment file name " + _ANY + r" is not usable",
            N_("The file name %(value)s cannot be used"),
        ),
        (
            r"item \S+ is (?P<status>\w+); attachments cannot change now",
            N_("The item is %(status)s: its attachments cannot change now"),
        ),
        (
            r"(revision \d+ of )?item \S+ is in review.*",
            N_("The text is in review: a reviewer must approve or return it before it can change"),
        ),
        (
            r"item \S+ is (?P<status>\w+) and can no longer be edited",
            N_("The item is %(status)s and can no longer be edited"),
        ),
        (
            r"item \S+ has changed since you read it.*",
            N_("Someone changed the item since you opened it: open it again and repeat your edit"),
        ),
        (r"item \S+ changed status concurrently", N_("The item changed meanwhile; try again")),
        (
            r"cannot (?P<action>\w+) an item that is (?P<status>\w+).*",
            N_("The item is %(status)s: you cannot %(action)s now"),
        ),
        (
            r"cannot (?P<action>\w+) revision \d+ of item \S+: it is (?P<status>\w+)",
            N_("The correction is %(status)s: you cannot %(action)s now"),
        ),
        (r"role \w+ may not create or edit items", N_("Your role does not write items.")),
        (r"role \w+ may not do [\w.]+ \(publisher\.policy\)", N_("Your role may not do this.")),
        (r"role \w+ may not (?P<action>\w+) items", N_("Your role may not %(action)s.")),
        (
            r".* wrote this revision and cannot also approve it.*",
            N_(
                "You wrote this revision, so you cannot approve it yourself: another reviewer "
                "must do the confidentiality review."
            ),
        ),
        (r"索引号 (?P<value>\S+) is already in the store", N_("索引号 %(value)s is taken")),
        (r"no item with id " + _ANY, N_("There is no such item.")),
        (r"no such subscription", N_("There is no such subscription.")),
        (r"pack \d+ is \w+: not ready yet", N_("it is not ready yet")),
        (r"pack \d+ is \w+: it was not sent", N_("it was not sent")),
        (
            r"name: a board named '(?P<value>[^']*)' exists already",
            N_("Name: there is a board named %(value)s already"),
        ),
        (r"(?P<field>\w+): must not be null", N_("%(field)s: must not be blank")),
        (r"this address is not subscribed", N_("This address is not subscribed.")),
        (
            r"frequency: must be immediate or daily",
            N_("Frequency: choose immediately or daily"),
        ),
    )
)


def field_label(gettext: Translate, name: str) -> str:
    label = FIELD_LABELS.get(name)
    return gettext(label) if label else name


def action_label(gettext: Translate, action: str) -> str:
    label = ACTION_LABELS.get(action)
    return gettext(label) if label else action


def actor_label(gettext: Translate, actor: str) -> str:
    label = ACTOR_LABELS.get(actor)
    return gettext(label) if label else actor


def size_text(size: int) -> str:
    """Bytes as a person reads them: 20 MB, 512 KB, 900 B (binary units, as the limits)."""
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= factor:
            value = size / factor
            return (
                f"{value:.0f} {unit}"
                if value >= 10 or value.is_integer()
                else (f"{value:.1f} {unit}")
            )
    return f"{size} B"


def password_problem(gettext: Translate, code: str, min_length: int) -> str:
    """A password policy complaint (publisher.passwords, by its code) in the UI's language."""
    if code == "too_short":
        return gettext("The new password must have at least %(n)d characters.") % {"n": min_length}
    if code == "too_long":
        return gettext("The new password is too long.")
    if code == "common":
        return gettext("This password is one of the most common passwords: choose another.")
    return gettext(
        "This password is too easy to guess: use a longer phrase of several unrelated words."
    )


def core_message(gettext: Translate, detail: str) -> str:
    """A core error's English detail in the UI's language; a generic sentence for a detail
    no pattern knows (which a test keeps from happening on the pages)."""
    for pattern, message in CORE_MESSAGES:
        m = pattern.match(detail)
        if m is None:
            continue
        groups: dict[str, Any] = {k: v for k, v in m.groupdict().items() if v is not None}
        if "field" in groups:
            groups["field"] = field_label(gettext, groups["field"])
        if "status" in groups:
            word = STATUS_WORDS.get(groups["status"])
            groups["status"] = gettext(word) if word else groups["status"]
        if "action" in groups:
            word = ACTION_WORDS.get(groups["action"])
            groups["action"] = gettext(word) if word else groups["action"]
        if "bytes" in groups:
            groups["size"] = size_text(int(groups.pop("bytes")))
        return gettext(message) % groups if groups else gettext(message)
    return gettext("This cannot be done.")


def pydantic_message(gettext: Translate, err: ErrorDetails) -> str:
    """One pydantic error (without the field's name) in the UI's language."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return gettext("is required")
    if kind == "value_error":
        return core_message(gettext, str(ctx.get("error", err["msg"])))
    if kind == "string_too_long":
        return gettext("at most %(max)s characters") % {"max": ctx.get("max_length", "")}
    if kind == "string_too_short":
        return gettext("must not be blank")
    if kind == "too_long":
        return gettext("at most %(max)s entries") % {"max": ctx.get("max_length", "")}
    if kind in ("enum", "literal_error"):
        return gettext("is not one of the choices")
    if "date" in kind or "time" in kind:
        return gettext("is not a valid date or time")
    if kind.startswith("bool"):
        return gettext("must be yes or no")
    return gettext("is not valid")


def without_label(message: str, label: str) -> str:
    """`message` without a leading "<label>:" (a form shows the label before it already)."""
    return re.sub(r"\A" + re.escape(label) + r"\s*[:：]\s*", "", message)
