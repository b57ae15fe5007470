"""Loopback stand-ins for SMS gateways: Alibaba Cloud's SendSms (checking the request
signature with its own implementation of the documented algorithm, not the adapter's)
and a bare Kannel sendsms that accepts everything. Each can be told to fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

ACCESS_KEY_ID = "LTAI5tTestAccessKeyId"
ACCESS_KEY_SECRET = "aliyun-test-secret-never-shown"
SIGN_NAME = "上余镇人民政府"
TEMPLATES = {
    "published": {
        "code": "SMS_460001",
        "text": "${title}，详见 gk.example.gov.cn/s/${short} 回TD退订",
    },
    "corrected": {
        "code": "SMS_460002",
        "text": "更正：${title}，详见 gk.example.gov.cn/s/${short}",
    },
    "message": {"code": "SMS_460003", "text": "您的验证码是${code}，10分钟内有效。"},
}
REQUIRED = {
    "AccessKeyId", "Action", "Format", "PhoneNumbers", "RegionId", "SignName",
    "SignatureMethod", "SignatureNonce", "SignatureVersion", "TemplateCode",
    "TemplateParam", "Timestamp", "Version", "Signature",
}  # fmt: skip


def aliyun_gateway(url: str, **overrides: Any) -> dict[str, Any]:
    """A `gateways` entry of type aliyun pointed at `url`."""
    return {
        "name": "aliyun",
        "type": "aliyun",
        "url": url,
        "access_key_id": ACCESS_KEY_ID,
        "access_key_secret": ACCESS_KEY_SECRET,
        "sign_name": SIGN_NAME,
        "templates": TEMPLATES,
        **overrides,
    }


def _encode(value: str) -> str:
    # the documented rule, written out: java.net.URLEncoder, then + -> %20, * -> %2A, %7E -> ~
    return (
        urllib.parse.quote_plus(value, safe="*")
        .replace("+", "%20")
        .replace("*", "%2A")
        .replace("%7E", "~")
    )


def expected_signature(method: str, params: dict[str, str], secret: str) -> str:
    query = "&".join(
        f"{_encode(k)}={_encode(params[k])}" for k in sorted(params) if k != "Signature"
    )
    to_sign = f"{method}&{_encode('/')}&{_encode(query)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass
class FakeAliyun:
    """Answers SendSms like the platform: OK with a BizId when the request is complete and
    correctly signed, SignatureDoesNotMatch otherwise; `fail_with` forces an answer."""

    secret: str = ACCESS_KEY_SECRET
    #: every accepted request's parameters
    accepted: list[dict[str, str]] = field(default_factory=list)
    #: refusals, as (code, reason)
    refused: list[tuple[str, str]] = field(default_factory=list)
    #: (HTTP status, Code) to answer instead of checking anything
    fail_with: tuple[int, str] | None = None
    nonces: set[str] = field(default_factory=set)

    def refuse(self, code: str, why: str, status: int = 400) -> web.Response:
        self.refused.append((code, why))
        # like the platform, the message quotes the string to sign (a number in it)
        body = {"Code": code, "Message": f"{why}; server string to sign is: POST&%2F&PhoneNumbers%3D13800138000", "RequestId": "r"}  # fmt: skip
        return web.json_response(body, status=status)

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail_with is not None:
            status, code = self.fail_with
            if code == "":
                return web.Response(status=status, text="busy")
            return self.refuse(code, "forced", status)
        if request.method != "POST" or request.content_type != "application/x-www-form-urlencoded":
            return self.refuse("InvalidParameter", "not a form POST")
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        missing = REQUIRED - params.keys()
        if missing:
            return self.refuse("MissingParameter", f"missing {sorted(missing)}")
        if params["Signature"] != expected_signature("POST", params, self.secret):
            return self.refuse("SignatureDoesNotMatch", "signature")
        if (params["SignatureMethod"], params["SignatureVersion"]) != ("HMAC-SHA1", "1.0"):
            return self.refuse("InvalidParameter", "signature method")
        if params["AccessKeyId"] != ACCESS_KEY_ID:
            return self.refuse("InvalidAccessKeyId.NotFound", "key id")
        when = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if abs(datetime.now(UTC) - when) > timedelta(minutes=15):
            return self.refuse("InvalidTimeStamp.Expired", "timestamp")
        if params["SignatureNonce"] in self.nonces:
            return self.refuse("SignatureNonceUsed", "nonce")
        self.nonces.add(params["SignatureNonce"])
        if (params["Action"], params["Version"]) != ("SendSms", "2017-05-25"):
            return self.refuse("InvalidAction", "action")
        if "【" in params["SignName"] or "】" in params["SignName"]:
            return self.refuse("isv.SMS_SIGNATURE_ILLEGAL", "sign name")
        codes = {t["code"]: t["text"] for t in TEMPLATES.values()}
        if params["TemplateCode"] not in codes:
            return self.refuse("isv.SMS_TEMPLATE_ILLEGAL", "template")
        values = json.loads(params["TemplateParam"])
        wanted = set(re.findall(r"\$\{(\w+)\}", codes[params["TemplateCode"]]))
        if set(values) != wanted:
            return self.refuse("isv.TEMPLATE_MISSING_PARAMETERS", f"{sorted(values)} != {wanted}")
        if any("【" in v or "】" in v or len(v) > 35 for v in values.values()):
            return self.refuse("isv.PARAM_LENGTH_LIMIT", "variable")
        number = params["PhoneNumbers"]
        if not (number.isdigit() and len(number) == 11 and number.startswith("1")):
            return self.refuse("isv.MOBILE_NUMBER_ILLEGAL", "number")
        self.accepted.append(params)
        biz = f"{len(self.accepted):06d}^0"
        return web.json_response({"Code": "OK", "Message": "OK", "BizId": biz, "RequestId": "req"})


@dataclass
class FakeKannel:
    """smsbox's sendsms that accepts (202) every complete request, or answers `status`."""

    accepted: list[dict[str, str]] = field(default_factory=list)
    status: int = 202

    async def handle(self, request: web.Request) -> web.Response:
        if self.status != 202:
            return web.Response(status=self.status, text="3: temporarily unavailable")
        query = dict(request.query)
        if not {"username", "password", "from", "to", "text"} <= query.keys():
            return web.Response(status=400, text="missing")
        self.accepted.append(query)
        return web.Response(status=202, text="0: Accepted for delivery")


@asynccontextmanager
async def serve(fake: FakeAliyun | FakeKannel) -> AsyncIterator[str]:
    """`fake` on a loopback port; yields its URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        path = "/" if isinstance(fake, FakeAliyun) else "/cgi-bin/sendsms"
        yield str(server.make_url(path))
    finally:
        await server.close()
