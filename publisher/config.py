"""config.yaml: validated once at start, overridable key by key from the environment.

Every error names the key (dotted path) and the problem, so an operator can fix
the file from the one line the CLI prints.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from publisher.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "PUBLISHER__"
#: keys that moved from ui to security.login
_MOVED_LOGIN_KEYS = ("max_failed_logins", "lockout_minutes")
ChannelName = Literal["portal", "rss", "sms", "email", "board"]
CHANNEL_NAMES: tuple[ChannelName, ...] = ("portal", "rss", "sms", "email", "board")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(_Strict):
    name: str = Field(min_length=1)
    agency: str = Field(min_length=1)
    agency_code: str = Field(min_length=1, pattern=r"^[0-9A-Za-z-]+$")
    base_url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    timezone: str = "Asia/Shanghai"
    #: how 索引号 are formed; fields: agency_code, year, serial
    index_format: str = "{agency_code}/{year}-{serial:05d}"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("index_format")
    @classmethod
    def _formattable(cls, value: str) -> str:
        try:
            value.format(agency_code="X", year=2024, serial=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"cannot be formatted with agency_code, year, serial: {exc}") from None
        if "{serial" not in value:
            raise ValueError("must contain {serial}")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def public_base(self) -> str:
        return self.base_url.rstrip("/")


class StorageConfig(_Strict):
    url: str = "sqlite:///data/publisher.db"
    attachments_dir: str = "data/attachments"
    #: where the rss channel writes the feeds as static files (any web server may serve them)
    feeds_dir: str = "data/feeds"
    #: largest attachment accepted, in bytes
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not (
            value.startswith("sqlite:///") or value.startswith(("postgresql://", "postgres://"))
        ):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


#: the feed that carries every category (its slug is reserved)
ALL_FEED = "all"


class Category(_Strict):
    slug: str
    name: str = Field(min_length=1)
    keyword: str = Field(min_length=1, pattern=r"^[0-9A-Za-z]+$")

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG_RE.match(value):
            raise ValueError("must be lower-case letters, digits and '-'")
        if value == ALL_FEED:
            raise ValueError(f"{ALL_FEED!r} is reserved for the feed of every category")
        return value


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    #: addresses (or CIDR networks) of reverse proxies whose X-Forwarded-* we believe
    trusted_proxies: list[str] = Field(default_factory=list)
    #: largest JSON request body, in bytes
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # from the environment a list arrives as one scalar: "10.0.0.1, 10.0.0.2"
        if isinstance(value, str):
            return [p for p in re.split(r"[,\s]+", value) if p]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for i, entry in enumerate(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"entry {i}: {entry!r} is not an IP address or CIDR network"
                ) from None
        return value


class LoginSecurityConfig(_Strict):
    """Staff log-in: failure counting, lock-outs, password hashing, password policy and
    the TOTP second factor.

    Failures are counted per (account, client network), per account and per network; a
    client network is an IPv4 address or an IPv6 /64.
    """

    #: failed log-ins for one account from one network before that pair is locked out
    max_failed_logins: int = Field(default=5, ge=1, le=100)
    #: how long a locked (account, network) pair stays locked (minutes)
    lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    #: failures for one account from all networks within `account_window_minutes` after
    #: which its log-ins are throttled (one try per `account_throttle_seconds`, from
    #: anywhere); must be above what one network can reach on its own, so nobody can lock
    #: a colleague out from one place. None: that much plus 10 (30 with the defaults)
    account_max_failures: int | None = Field(default=None, ge=2, le=10_000)
    account_window_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    account_throttle_seconds: int = Field(default=20, ge=1, le=3600)
    #: failures from one network (for any accounts) before the network is locked out
    network_max_failures: int = Field(default=50, ge=1, le=100_000)
    #: threads that verify and hash passwords (argon2), off the event loop
    hash_threads: int = Field(default=2, ge=1, le=64)
    #: log-ins waiting for a hashing thread beyond this are refused (busy) at once
    hash_queue: int = Field(default=64, ge=1, le=10_000)
    #: the shortest password accepted
    min_password_length: int = Field(default=12, ge=8, le=128)
    #: the least zxcvbn score (0-4) a new password needs
    min_password_score: int = Field(default=3, ge=0, le=4)
    #: a password older than this must be changed at the next log-in; none: no limit
    max_password_age_days: int | None = Field(default=None, ge=1, le=3650)
    #: roles that must use a TOTP second factor: such a user without one is sent to
    #: enrolment right after the password and can do nothing else until enrolled.
    #: Empty (the default): TOTP is optional for everyone. API bearer tokens are
    #: separate credentials and are not affected.
    require_totp_for: list[Literal["editor", "reviewer", "admin"]] = Field(default_factory=list)

    @field_validator("require_totp_for", mode="before")
    @classmethod
    def _roles_from_text(cls, value: Any) -> Any:
        # from the environment: "admin" or "admin,editor" (or YAML's "[admin, editor]")
        if isinstance(value, str):
            return [r for r in re.split(r"[\s,\[\]]+", value) if r]
        return value

    @property
    def one_network_reach(self) -> int:
        """The most failures one network can add to an account within the window: it is
        locked after max_failed_logins for lockout_minutes."""
        return self.max_failed_logins * -(-self.account_window_minutes // self.lockout_minutes)

    @property
    def account_threshold(self) -> int:
        """account_max_failures, or its default."""
        if self.account_max_failures is not None:
            return self.account_max_failures
        return self.one_network_reach + 10

    @model_validator(mode="after")
    def _above_one_network(self) -> LoginSecurityConfig:
        per_window = self.one_network_reach
        if self.account_max_failures is not None and self.account_max_failures <= per_window:
            raise ValueError(
                f"account_max_failures: must be more than {per_window}, what one network can "
                "reach within account_window_minutes (max_failed_logins per lockout_minutes)"
            )
        return self


class SecurityConfig(_Strict):
    #: key for residents' addresses at rest (urlsafe base64, 32 bytes)
    data_key: str | None = None
    #: or a file that holds it (mode 0600); `make run` creates one
    data_key_file: str | None = None
    #: staff log-in
    login: LoginSecurityConfig = LoginSecurityConfig()


_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class QuietHours(_Strict):
    """A nightly window (site time) in which non-urgent deliveries wait; may cross midnight."""

    start: str
    end: str

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time_of_day(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            # YAML 1.1 reads an unquoted 21:00 as sexagesimal: the number 1260
            hh_mm = f"{value // 60:02d}:{value % 60:02d}"
            raise ValueError(
                f'must be a time in quotes ("{hh_mm}"): unquoted, YAML reads {hh_mm} '
                f"as the number {value}"
            )
        if isinstance(value, str) and not _HH_MM.match(value.strip()):
            raise ValueError(
                "must be a time of day as HH:MM on the 24-hour clock, two digits each "
                f"(e.g. 21:00 or 08:00), not {value!r}"
            )
        return value.strip() if isinstance(value, str) else value


class EndpointConfig(_Strict):
    """A non-personal target declared in config (portal endpoint, board), created on first start."""

    name: str = Field(min_length=1, max_length=128)
    address: str = Field(min_length=1)
    categories: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)


class ChannelConfig(_Strict):
    enabled: bool = True
    #: "module:Class" of another adapter for this channel (a custom gateway, a test double)
    adapter: str | None = None
    #: adapter-specific settings, validated by the adapter at start
    settings: dict[str, Any] = Field(default_factory=dict)
    # overrides of the adapter's declared limits (None: the adapter's default)
    concurrency: int | None = Field(default=None, ge=1, le=1000)
    per_second: float | None = Field(default=None, gt=0)
    repeatable: bool | None = None
    #: attempts before a row ends `failed`
    max_attempts: int = Field(default=6, ge=1, le=100)
    #: first retry delay; doubles each attempt (with jitter) up to retry_cap_seconds
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_cap_seconds: float = Field(default=3600.0, gt=0)
    quiet_hours: QuietHours | None = None
    endpoints: list[EndpointConfig] = Field(default_factory=list)


class ChannelsConfig(_Strict):
    portal: ChannelConfig = ChannelConfig()
    rss: ChannelConfig = ChannelConfig()
    sms: ChannelConfig = ChannelConfig(quiet_hours=QuietHours(start="21:00", end="08:00"))
    email: ChannelConfig = ChannelConfig()
    board: ChannelConfig = ChannelConfig()

    @model_validator(mode="before")
    @classmethod
    def _channel_defaults(cls, data: Any) -> Any:
        # SMS waits for the morning unless config says otherwise (quiet_hours: null to turn off)
        if isinstance(data, dict) and isinstance(data.get("sms"), dict):
            data["sms"] = {"quiet_hours": {"start": "21:00", "end": "08:00"}, **data["sms"]}
        return data

    def get(self, name: str) -> ChannelConfig:
        value = getattr(self, name)
        assert isinstance(value, ChannelConfig)
        return value


class DeliveryConfig(_Strict):
    """The delivery workers (in `serve`, or `publisher worker` processes)."""

    #: rows claimed at a time per channel (capped by the channel's concurrency)
    batch_size: int = Field(default=200, ge=1, le=10000)
    #: how often an idle worker looks for due rows (seconds)
    poll_seconds: float = Field(default=1.0, gt=0)
    #: a worker's heartbeat period; one silent for 3 periods is presumed dead
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    #: recipients read per planning batch (memory stays flat as lists grow)
    plan_batch: int = Field(default=1000, ge=1, le=100000)


class ItemsConfig(_Strict):
    #: channels an item gets when it names none
    default_channels: list[ChannelName] = Field(default_factory=lambda: list(CHANNEL_NAMES))
    max_body_chars: int = Field(default=200_000, gt=0)
    #: summary length derived from the body when none is given
    summary_chars: int = Field(default=120, gt=10)


class SchedulerConfig(_Strict):
    #: how often the store is swept for due publications, expiries (seconds)
    sweep_seconds: float = Field(default=30.0, gt=0)


class MetricsConfig(_Strict):
    """Who may read /metrics: loopback clients, and anyone with the token."""

    allow_loopback: bool = True
    token: str | None = None


class UiConfig(_Strict):
    """The staff web interface: language, sessions (log-in settings: security.login)."""

    #: the catalogue (locale/<language>/LC_MESSAGES/messages.mo) pages are shown in
    language: str = Field(default="zh_CN", pattern=r"^[a-z]{2}(_[A-Z]{2})?$")
    #: a session unused this long ends (minutes)
    session_idle_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)
    #: deprecated: security.login.max_failed_logins (still read, with a log line)
    max_failed_logins: int | None = Field(default=None, ge=1, le=100)
    #: deprecated: security.login.lockout_minutes (still read, with a log line)
    lockout_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    #: the session cookie's Secure flag: auto = when the request came over https
    secure_cookie: Literal["auto", "always", "never"] = "auto"


class ReportsConfig(_Strict):
    """The annual report (publisher.reports)."""

    #: 主题分类 slug of the item the report is published as; default the first taxonomy entry
    category: str | None = Field(default=None, min_length=1, max_length=64)


class Config(_Strict):
    site: SiteConfig
    storage: StorageConfig = StorageConfig()
    taxonomy: list[Category] = Field(min_length=1)
    server: ServerConfig = ServerConfig()
    security: SecurityConfig = SecurityConfig()
    channels: ChannelsConfig = ChannelsConfig()
    items: ItemsConfig = ItemsConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    metrics: MetricsConfig = MetricsConfig()
    ui: UiConfig = UiConfig()
    reports: ReportsConfig = ReportsConfig()
    #: folder of the config file; relative paths are resolved against it
    base_dir: Path = Path(".")
    #: where each value came from, for messages: the file, or the environment variable
    #: (by the key path it set) that overrode it
    _file: str = PrivateAttr(default="config.yaml")
    _env_sources: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _moved_login_keys(cls, data: Any) -> Any:
        """ui.max_failed_logins / ui.lockout_minutes moved to security.login; the old keys
        still work (a key set in security.login wins), with a deprecation log line."""
        if not isinstance(data, dict) or not isinstance(data.get("ui"), dict):
            return data
        ui = dict(data["ui"])
        moved = {k: ui.pop(k) for k in _MOVED_LOGIN_KEYS if ui.get(k) is not None}
        if not moved:
            return data
        security = data.get("security")
        security = dict(security) if isinstance(security, dict) else {}
        login = security.get("login")
        login = dict(login) if isinstance(login, dict) else {}
        for key, value in moved.items():
            log.warning(
                "config: ui.%s is deprecated, use security.login.%s%s",
                key,
                key,
                " (both set: security.login wins)" if key in login else "",
            )
            login.setdefault(key, value)
        security["login"] = login
        return {**data, "ui": ui, "security": security}

    @model_validator(mode="after")
    def _unique_slugs(self) -> Config:
        for attr in ("slug", "keyword"):
            seen: set[str] = set()
            for i, cat in enumerate(self.taxonomy):
                value = getattr(cat, attr).lower()
                if value in seen:
                    raise ValueError(f"taxonomy.{i}.{attr}: {value!r} appears twice")
                seen.add(value)
        if self.reports.category is not None and self.category(self.reports.category) is None:
            raise ValueError(f"reports.category: {self.reports.category!r} is not a taxonomy slug")
        return self

    @property
    def report_category(self) -> str:
        """The category the annual report is published under."""
        return self.reports.category or self.taxonomy[0].slug

    def category(self, slug: str) -> Category | None:
        return next((c for c in self.taxonomy if c.slug == slug), None)

    def resolve_path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL with the async driver for the configured store."""
        url = self.storage.url
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + str(self.resolve_path(url[len("sqlite:///") :]))
        return "postgresql+asyncpg://" + url.split("://", 1)[1]

    @property
    def attachments_path(self) -> Path:
        return self.resolve_path(self.storage.attachments_dir)

    @property
    def feeds_path(self) -> Path:
        return self.resolve_path(self.storage.feeds_dir)

    def explain(
        self,
        exc: ValidationError,
        prefix: tuple[str, ...] = (),
        model: type[BaseModel] | None = None,
    ) -> str:
        """One line for a validation error of the value at `prefix` (validated by `model`,
        e.g. a channel's Settings), blamed on the file or the environment variable."""
        return describe_error(exc, self._file, self._env_sources, prefix, model)

    def data_key(self) -> bytes:
        """The key that encrypts residents' addresses; raises ConfigError when unset."""
        sec = self.security
        if sec.data_key:
            raw = sec.data_key
        elif sec.data_key_file:
            path = self.resolve_path(sec.data_key_file)
            try:
                raw = path.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"security.data_key_file: cannot read {path}: {exc.strerror}"
                    " (create one with `publisher key generate`)"
                ) from None
        else:
            raise ConfigError("security.data_key: not set (nor security.data_key_file)")
        return raw.encode()


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node: Any = tree
    for i, part in enumerate(path[:-1]):
        child = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            child = node[int(part)]
        if child is None:
            child = {}
            node[part] = child
        elif not isinstance(child, dict | list):
            dotted = ".".join(path[: i + 1])
            raise ConfigError(f"{dotted}: is a value, cannot override a key below it")
        node = child
    last = path[-1]
    if isinstance(node, list):
        if not (last.isdigit() and int(last) < len(node)):
            raise ConfigError(f"{'.'.join(path)}: no such list element")
        node[int(last)] = value
    else:
        node[last] = value


def apply_env_overrides(
    tree: dict[str, Any],
    environ: Mapping[str, str],
    sources: dict[tuple[str, ...], str] | None = None,
) -> dict[str, Any]:
    """PUBLISHER__STORAGE__URL=... overrides storage.url; values parse as YAML scalars.
    `sources`, when given, gets the variable's name under each key path it set."""
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        raw = environ[name]
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if value is not None and not isinstance(value, str):
            # only scalars come from the environment; keep the text, so a string key gets
            # it verbatim (an all-digit agency code, a key) and validation reads bools and
            # numbers ("false", "10") from it
            value = raw.strip()
        try:
            _set_path(tree, path, value)
        except ConfigError as exc:
            raise ConfigError(f"environment variable {name}: {exc.detail}") from None
        if sources is not None:
            sources[tuple(path)] = name
    return tree


#: what a value that does not match a field's pattern should look like, in words
_PATTERN_WORDS = {
    r"^[0-9A-Za-z-]+$": "must be letters, digits and '-' only",
    r"^https?://[^\s/]+(/[^\s]*)?$": "must be an http:// or https:// URL without spaces",
    r"^[0-9A-Za-z]+$": "must be letters and digits only",
    r"^[a-z]{2}(_[A-Z]{2})?$": "must be a language code such as zh_CN or en",
}


def _unwrap(annotation: Any) -> Any:
    """The model inside Optional[...] / list[...] / dict[str, ...] annotations, if any."""
    while True:
        origin = get_origin(annotation)
        if origin in (Union, types.UnionType):
            inner = [a for a in get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                return annotation
            annotation = inner[0]
        elif origin in (list, tuple, dict):
            annotation = get_args(annotation)[-1] if get_args(annotation) else Any
        else:
            return annotation


def _keys_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The keys the model allows at `loc` (a path of keys and list indexes)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            continue  # an element of a list: the annotation already names the element
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _unwrap(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [k for k in current.model_fields if k != "base_dir"]
    return []


def _message(err: Any, model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        msg = f"unknown key `{key}`"
        near = difflib.get_close_matches(key, _keys_at(model, loc[:-1]), n=1, cutoff=0.6)
        return f"{msg} — did you mean `{near[0]}`?" if near else msg
    if kind == "missing":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        pattern = str((err.get("ctx") or {}).get("pattern", ""))
        return _PATTERN_WORDS.get(pattern, "does not have the form this key needs")
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg.replace("Input should be", "must be").replace("String should", "must")


def describe_error(
    exc: ValidationError,
    file: str,
    env_sources: Mapping[tuple[str, ...], str] | None = None,
    prefix: tuple[str, ...] = (),
    model: type[BaseModel] | None = None,
) -> str:
    """One line for a pydantic error: where the value came from (the file, or the
    environment variable that set it), the key's dotted path, what is wrong, and how
    many more problems there are. A misspelt key is one problem: the required key it
    was meant to be is not reported missing as well."""
    model = Config if model is None and not prefix else model
    errors = [((*prefix, *e["loc"]), e) for e in exc.errors()]
    meant: set[tuple[Any, ...]] = set()
    for loc, err in errors:
        if err["type"] == "extra_forbidden" and loc:
            near = difflib.get_close_matches(
                str(loc[-1]), _keys_at(model, loc[len(prefix) : -1]), n=1, cutoff=0.6
            )
            if near:
                meant.add((*loc[:-1], near[0]))
    errors = [(loc, e) for loc, e in errors if not (e["type"] == "missing" and loc in meant)]
    # a misspelt key explains itself and often the errors after it: report it first
    errors.sort(key=lambda le: le[1]["type"] != "extra_forbidden")
    loc, err = errors[0]
    path = ".".join(str(p) for p in loc) or "(top level)"
    msg = _message(err, model, loc[len(prefix) :])
    source = file
    for env_path, name in (env_sources or {}).items():
        if tuple(str(p) for p in loc[: len(env_path)]) == env_path:
            source = f"environment variable {name}"
            break
    more = len(errors) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {path}: {msg}{tail}"


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment, validate. Raises ConfigError naming the key."""
    environ = os.environ if environ is None else environ
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    sources: dict[tuple[str, ...], str] = {}
    tree = apply_env_overrides(tree, environ, sources)
    tree["base_dir"] = path.resolve().parent
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(describe_error(exc, str(path), sources)) from None
    config._file = str(path)
    config._env_sources = sources
    return config
