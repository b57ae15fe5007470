"""SMS through Alibaba Cloud SMS (短信服务, dysmsapi): the documented RPC-style `SendSms` API.

One attempt is one signed `POST` to the endpoint (the form body rather than the query
string keeps numbers out of proxies' URL logs) with `PhoneNumbers`, `SignName`, a
pre-approved `TemplateCode` per message kind and its `TemplateParam` (JSON). The platform
puts the approved signature 【SignName】 in front itself, so nothing we send carries one.

The request signature (RPC, SignatureVersion 1.0): every parameter but `Signature`,
sorted by name, each name and value percent-encoded (RFC 3986: only A-Z a-z 0-9 - _ . ~
stay as they are; a space is %20), joined as `k=v&k=v`; the string to sign is
`POST&%2F&` + that canonical query percent-encoded once more; the signature is the
base64 HMAC-SHA1 of it keyed with `AccessKeySecret + "&"`.

Answers are JSON with a `Code`: "OK" (and a `BizId`) or an error code, mapped to
retry / give up by the data table ALIYUN_CODES behind `aliyun_verdict`. Faults of the
gateway itself (credentials, signature, template, balance, throttling) are transient,
so the channel fails over to the next gateway; faults of one message (the number) are
permanent. The AccessKeySecret never appears in an error or a log line, and neither
does the platform's `Message` (it may quote the string to sign, numbers included).

Delivery reports come back by the platform's "HTTP batch push" of SmsReport messages
(短信回执消息, HTTP 批量推送; help.aliyun.com/document_detail/101867): a `POST` of a JSON
array, each entry with `phone_number`, `send_time`, `report_time`, `success` (bool),
`err_code` ("DELIVERED" or why not), `err_msg`, `sms_size`, `biz_id` (SendSms's BizId)
and `out_id` (the OutId we sent: the ledger row's id). It cannot sign them, so the URL
configured in its console carries a token (`report_token`, an HMAC of the gateway's
name with a key of its own); `python -m channels.sms_aliyun [CONFIG]` prints that URL.
The pure parts are here (`parse_reports`, `report_reason`, `report_number_matches`);
the route is publisher.web.sms_aliyun_reports.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from string import Template
from typing import Literal
from urllib.parse import quote

import aiohttp
import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from channels.base import PermanentDeliveryError, TransientDeliveryError, secret_from
from channels.gateway_http import exchange
from publisher.config import Config
from publisher.derived import derived_key

API_VERSION = "2017-05-25"
#: variables a template for an item may use, and for a transactional message
ITEM_VARIABLES = frozenset({"title", "summary", "link", "short"})
MESSAGE_VARIABLES = frozenset({"code"})


# -- the signature (pure) ------------------------------------------------------------------


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding as the RPC signature wants it (UTF-8; ~ kept, space %20)."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The sorted, percent-encoded `k=v&…` of every parameter but Signature."""
    return "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def rpc_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """Base64 HMAC-SHA1 of the string to sign, keyed with `secret + "&"`."""
    mac = hmac.new(f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


# -- answer codes (data) ---------------------------------------------------------------------


class Verdict(StrEnum):
    SENT = "sent"
    #: the gateway cannot send now (its account, credentials, limits): retry, fail over
    GATEWAY = "gateway"
    #: this message cannot be sent (the number, its content): give up
    MESSAGE = "message"


@dataclass(frozen=True, slots=True)
class CodeMeaning:
    verdict: Verdict
    #: short slug: the ledger row's reason when it fails
    reason: str


_GATEWAY_FAULTS = {
    "isv.BUSINESS_LIMIT_CONTROL": "rate_limited",
    "isv.DAY_LIMIT_CONTROL": "rate_limited",
    "Throttling.User": "rate_limited",
    "isv.AMOUNT_NOT_ENOUGH": "no_balance",
    "isv.OUT_OF_SERVICE": "no_balance",
    "isp.SYSTEM_ERROR": "gateway_error",
    "isp.OUT_OF_SERVICE": "gateway_error",
    "ServiceUnavailable": "gateway_error",
    "SignatureNonceUsed": "gateway_error",
    "InvalidTimeStamp.Expired": "gateway_error",
    "InvalidAccessKeyId.NotFound": "misconfigured",
    "InvalidAccessKeyId.Inactive": "misconfigured",
    "SignatureDoesNotMatch": "misconfigured",
    "isp.RAM_PERMISSION_DENY": "misconfigured",
    "isv.ACCOUNT_NOT_EXISTS": "misconfigured",
    "isv.ACCOUNT_ABNORMAL": "misconfigured",
    "isv.SMS_SIGNATURE_ILLEGAL": "misconfigured",
    "isv.SMS_TEMPLATE_ILLEGAL": "misconfigured",
    "isv.TEMPLATE_MISSING_PARAMETERS": "misconfigured",
    "isv.SMS_SIGN_ILLEGAL": "misconfigured",
}
_MESSAGE_FAULTS = {
    "isv.MOBILE_NUMBER_ILLEGAL": "bad_address",
    "isv.MOBILE_COUNT_OVER_LIMIT": "bad_address",
    "isv.BLACK_KEY_CONTROL_LIMIT": "content_rejected",
    "isv.PARAM_LENGTH_LIMIT": "content_rejected",
    "isv.PARAM_NOT_SUPPORT_URL": "content_rejected",
    "isv.INVALID_PARAMETERS": "rejected",
    "isv.INVALID_JSON_PARAM": "rejected",
}
#: what each documented answer code means for the ledger row
ALIYUN_CODES: dict[str, CodeMeaning] = {
    "OK": CodeMeaning(Verdict.SENT, "sent"),
    **{k: CodeMeaning(Verdict.GATEWAY, v) for k, v in _GATEWAY_FAULTS.items()},
    **{k: CodeMeaning(Verdict.MESSAGE, v) for k, v in _MESSAGE_FAULTS.items()},
}


def aliyun_verdict(code: str) -> CodeMeaning:
    """What an answer's Code means; a code not in the table fails the message (reason
    `rejected`) rather than risk sending it twice."""
    return ALIYUN_CODES.get(code, CodeMeaning(Verdict.MESSAGE, "rejected"))


# -- settings ----------------------------------------------------------------------------------


class AliyunTemplate(BaseModel):
    """A pre-approved template: its code and its text as approved (with ${variables})."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    #: the approved text, without the signature: counted for billing and shown in previews
    text: str = Field(min_length=1, max_length=500)

    def variables(self) -> set[str]:
        return set(Template(self.text).get_identifiers())


class AliyunTemplates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: a published item: ${title} ${summary} ${link} (the short link) ${short} (its code)
    published: AliyunTemplate
    #: a corrected item (same variables)
    corrected: AliyunTemplate
    #: a transactional message (the verification code): ${code}
    message: AliyunTemplate

    @model_validator(mode="after")
    def _known_variables(self) -> AliyunTemplates:
        for kind, allowed in (
            ("published", ITEM_VARIABLES),
            ("corrected", ITEM_VARIABLES),
            ("message", MESSAGE_VARIABLES),
        ):
            template: AliyunTemplate = getattr(self, kind)
            if "【" in template.text or "】" in template.text:
                raise ValueError(f"{kind}: the platform adds the 【signature】; leave it out")
            unknown = template.variables() - allowed
            if unknown:
                raise ValueError(
                    f"{kind}: unknown variable(s) {', '.join(sorted(unknown))} "
                    f"(allowed: {', '.join(sorted(allowed))})"
                )
        return self


class AliyunGatewaySettings(BaseModel):
    """An Alibaba Cloud SMS account under `channels.sms.settings.gateways` (type aliyun)."""

    # errors never echo a value: the AccessKeySecret may be among them
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(default="aliyun", min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")
    type: Literal["aliyun"]
    url: str = Field(default="https://dysmsapi.aliyuncs.com/", pattern=r"^https?://")
    region_id: str = Field(default="cn-hangzhou", min_length=1, max_length=32)
    access_key_id: str = Field(min_length=1, max_length=128)
    #: the secret inline, or the name of an environment variable holding it
    access_key_secret: str | None = None
    access_key_secret_env: str | None = None
    #: the approved signature name (签名名称), without 【】; the platform puts it in front
    sign_name: str = Field(min_length=1, max_length=30)
    templates: AliyunTemplates
    #: longest value of one template variable (the platform refuses longer ones)
    max_param_chars: int = Field(default=35, ge=1, le=500)
    #: always true here: the platform adds the signature (kept for the shared code paths)
    adds_signature: Literal[True] = True
    #: segments this gateway may send per local day (none: no cap)
    daily_segment_cap: int | None = Field(default=None, ge=1)
    timeout: float = Field(default=15.0, gt=0)

    @field_validator("sign_name")
    @classmethod
    def _bare_sign_name(cls, value: str) -> str:
        if "【" in value or "】" in value:
            raise ValueError("give the signature name without 【】")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> AliyunGatewaySettings:
        if (self.access_key_secret is None) == (self.access_key_secret_env is None):
            raise ValueError("give exactly one of access_key_secret or access_key_secret_env")
        return self

    def resolve_secret(self, environ: Mapping[str, str]) -> str:
        return secret_from(
            f"channels.sms.settings.gateways ({self.name})",
            "access_key_secret",
            self.access_key_secret,
            self.access_key_secret_env,
            environ,
        )


# -- the gateway --------------------------------------------------------------------------------


def aliyun_number(e164: str) -> str:
    """Mainland numbers as the 11 national digits; others as country code and number."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        raise PermanentDeliveryError("not a phone number", reason="bad_address") from None
    national = phonenumbers.national_significant_number(parsed)
    return national if parsed.country_code == 86 else f"{parsed.country_code}{national}"


def cut(value: str, limit: int) -> str:
    """`value` in at most `limit` characters, with … when cut."""
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def template_for(settings: AliyunGatewaySettings, kind: str) -> AliyunTemplate:
    """The approved template for a subject kind (published, corrected, message)."""
    t = settings.templates
    return t.message if kind == "message" else t.corrected if kind == "corrected" else t.published


def template_values(
    settings: AliyunGatewaySettings, kind: str, variables: Mapping[str, str]
) -> dict[str, str]:
    """The variables the kind's template uses, each cut to max_param_chars."""
    wanted = template_for(settings, kind).variables()
    return {k: cut(v, settings.max_param_chars) for k, v in variables.items() if k in wanted}


def template_text(settings: AliyunGatewaySettings, kind: str, variables: Mapping[str, str]) -> str:
    """What the phone shows: 【SignName】 and the template filled in (billed as such)."""
    values = template_values(settings, kind, variables)
    body = Template(template_for(settings, kind).text).safe_substitute(values)
    return f"【{settings.sign_name}】{body}"


class AliyunGateway:
    """One SendSms call per message; see the module docstring."""

    type = "aliyun"

    def __init__(
        self, settings: AliyunGatewaySettings, secret: str, session: aiohttp.ClientSession
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._secret = secret
        self.session = session

    def __repr__(self) -> str:  # never the secret
        return f"AliyunGateway({self.name!r})"

    def params(
        self,
        kind: str,
        variables: Mapping[str, str],
        to: str,
        delivery_id: str,
        *,
        now: datetime | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """The signed parameters of one SendSms request."""
        s = self.settings
        template = template_for(s, kind)
        values = template_values(s, kind, variables)
        params = {
            "AccessKeyId": s.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "OutId": delivery_id,
            "PhoneNumbers": aliyun_number(to),
            "RegionId": s.region_id,
            "SignName": s.sign_name,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce or uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": template.code,
            "TemplateParam": json.dumps(values, ensure_ascii=False, separators=(",", ":")),
            "Timestamp": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
        }
        params["Signature"] = rpc_signature("POST", params, self._secret)
        return params

    async def send(self, kind: str, variables: Mapping[str, str], to: str, delivery_id: str) -> str:
        """Returns the provider id (BizId); raises Transient/PermanentDeliveryError."""
        where = f"sms gateway {self.name!r}"
        status, raw = await exchange(
            self.session, "POST", self.settings.url, where=where, seconds=self.settings.timeout,
            data=self.params(kind, variables, to, delivery_id),
        )  # fmt: skip
        try:
            answer = json.loads(raw)
            code = str(answer["Code"])
        except (ValueError, KeyError, TypeError):
            if status >= 500 or status in (408, 429):
                raise TransientDeliveryError(f"{where}: HTTP {status}") from None
            raise PermanentDeliveryError(
                f"{where}: HTTP {status} without a JSON Code", reason="rejected"
            ) from None
        meaning = aliyun_verdict(code)
        if meaning.verdict is Verdict.SENT:
            return f"{self.name}:{answer.get('BizId') or delivery_id}"
        # only the code: the platform's Message may quote the string to sign (the number)
        said = f"{where}: HTTP {status}: {code[:100]}"
        if meaning.verdict is Verdict.GATEWAY:
            raise TransientDeliveryError(said)
        raise PermanentDeliveryError(said, reason=meaning.reason)


# -- delivery reports (SmsReport, HTTP batch push) -------------------------------------------

#: the purpose of the key the report URLs' tokens are made with (publisher.derived)
REPORT_PURPOSE = "sms/aliyun-report"
#: failure codes of reports with an obvious reason for staff; any other → "undelivered".
#: The platform's own codes and the carriers' CMPP ones it passes on; every code, listed
#: or not, stays in the event's detail with err_msg.
REPORT_REASONS: dict[str, str] = {
    "MOBILE_NOT_ON_SERVICE": "unreachable",  # 停机、空号、关机、不在服务区
    "IS_CLOSE": "unreachable",  # 关机
    "MOBILE_TERMINAL_ERROR": "unreachable",  # the handset (memory full, fault)
    "INVALID_NUMBER": "bad_address",  # 号码状态异常
    "MOBILE_IN_BLACK": "blocked",  # on the carrier's or platform's block list
    "USER_REJECT": "blocked",  # the phone refuses messages from this sender
    "CONTENT_KEYWORD": "content_rejected",  # the carrier's keyword filter
    "EXPIRED": "expired",  # not delivered within the SMSC's validity period
    "REJECTD": "smsc_reject",
    "UNDELIV": "undelivered",
}


def report_reason(err_code: str) -> str:
    """The ledger reason of a failed report's err_code."""
    return REPORT_REASONS.get(err_code.strip(), "undelivered")


def report_key(config: Config, dlr_secret: str | None = None) -> bytes:
    """The key of the report URLs' tokens: from `dlr_secret` where one is set (as Kannel's
    report tokens are), else derived from the data key; raises ConfigError without either."""
    if dlr_secret:
        base = hashlib.sha256(dlr_secret.encode()).digest()
        return hmac.new(base, REPORT_PURPOSE.encode(), hashlib.sha256).digest()
    return derived_key(config, REPORT_PURPOSE)


def report_token(key: bytes, gateway: str) -> str:
    """The token in gateway `gateway`'s report URL (128 bits, URL-safe)."""
    mac = hmac.new(key, f"aliyun-report:{gateway}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")


def report_path(token: str) -> str:
    return f"/sms/aliyun/report/{token}"


@dataclass(frozen=True, slots=True)
class SmsReport:
    """One entry of a pushed SmsReport array."""

    phone_number: str
    success: bool
    err_code: str
    err_msg: str
    biz_id: str
    out_id: str
    report_time: str

    @property
    def delivery_id(self) -> int | None:
        """The ledger row the report is about (our OutId), or None: not one of ours."""
        out = self.out_id.strip()
        return int(out) if out.isascii() and out.isdigit() and len(out) <= 18 else None


#: what every entry must carry, as the documentation gives them (all strings but success)
_REQUIRED_TEXT = ("phone_number", "err_code", "biz_id", "out_id")
_OPTIONAL_TEXT = ("send_time", "report_time", "err_msg")


def parse_report(entry: object) -> SmsReport:
    """One entry; raises ValueError saying what is wrong (never quoting a value)."""
    if not isinstance(entry, dict):
        raise ValueError("not a JSON object")
    for key in _REQUIRED_TEXT:
        if not isinstance(entry.get(key), str):
            raise ValueError(f"{key}: missing or not a string")
    if not isinstance(entry.get("success"), bool):
        raise ValueError("success: missing or not a boolean")
    for key in _OPTIONAL_TEXT:
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise ValueError(f"{key}: not a string")
    size = entry.get("sms_size")  # documented as a string; a number is taken too
    if size is not None and (isinstance(size, bool) or not isinstance(size, str | int)):
        raise ValueError("sms_size: not a string")
    return SmsReport(
        phone_number=entry["phone_number"],
        success=entry["success"],
        err_code=entry["err_code"],
        err_msg=entry.get("err_msg") or "",
        biz_id=entry["biz_id"],
        out_id=entry["out_id"],
        report_time=entry.get("report_time") or "",
    )


def parse_reports(data: object) -> tuple[list[SmsReport], list[str]]:
    """The reports of a pushed body, and what was wrong with each entry that is not one.
    Raises ValueError for a body that is no batch of reports at all: not an array, or
    an array none of whose entries is a report."""
    if not isinstance(data, list):
        raise ValueError("body: must be a JSON array of reports")
    reports: list[SmsReport] = []
    bad: list[str] = []
    for n, entry in enumerate(data):
        try:
            reports.append(parse_report(entry))
        except ValueError as exc:
            bad.append(f"[{n}] {exc}")
    if data and not reports:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"body: no entry is a report: {bad[0]}{more}")
    return reports, bad


def report_number_matches(reported: str, e164: str) -> bool:
    """Whether a report's phone_number is the number `e164`: as we sent it (the national
    digits for mainland China, else country code and number), or with its country code,
    `+` or `00` in front or not. A `*` in a masked number stands for any digit, but at
    least four digits must be visible."""
    got = reported.strip().removeprefix("+")
    if got.startswith("00"):
        got = got[2:]
    try:
        ours = {aliyun_number(e164), e164.removeprefix("+")}
    except PermanentDeliveryError:
        return False
    if sum(c.isdigit() for c in got) < 4:
        return False
    return any(
        len(got) == len(want) and all(c == "*" or c == w for c, w in zip(got, want, strict=True))
        for want in ours
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m channels.sms_aliyun [CONFIG]`: each aliyun gateway's report URL, the
    receiving address (接收地址) to set in its console for status reports (状态报告接收)
    in HTTP batch push mode (HTTP 批量推送)."""
    from channels.sms import callback_base, sms_settings  # channels.sms imports this module
    from publisher.config import load_config
    from publisher.errors import ConfigError

    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else os.environ.get("PUBLISHER_CONFIG", "config.yaml")
    try:
        config = load_config(path)
        settings = sms_settings(config)
        names = [g.name for g in settings.gateways if g.type == "aliyun"]
        if not names:
            raise ConfigError("channels.sms.settings.gateways: no gateway of type aliyun")
        key = report_key(config, settings.dlr_secret)
    except ConfigError as exc:
        sys.stderr.write(f"publisher: {exc.detail}\n")
        return 2
    base = callback_base(config, settings)
    for name in names:
        sys.stdout.write(f"{name}: {base}{report_path(report_token(key, name))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
