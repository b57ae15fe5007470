"""Channel adapters, one module each, and the registry keyed by channel name."""

from __future__ import annotations

import importlib

from channels.base import ChannelAdapter

#: name -> "module:Class" of the built-in adapter; a channel may name another in
#: config (`channels.<name>.adapter`), which is also how tests plug a loopback one
BUILTIN: dict[str, str] = {
    "portal": "channels.portal:PortalChannel",
    "rss": "channels.rss:FeedChannel",
    "sms": "channels.sms:SmsChannel",
    "email": "channels.mail:MailChannel",
    "board": "channels.board:BoardChannel",
}


def load_adapter_class(name: str, override: str | None = None) -> type[ChannelAdapter]:
    """The adapter class for channel `name`; raises LookupError when there is none."""
    path = override or BUILTIN.get(name)
    if path is None:
        raise LookupError(f"channel {name!r} has no adapter")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"channel {name!r}: cannot load adapter {path!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, ChannelAdapter)):
        raise LookupError(f"channel {name!r}: {path!r} is not a ChannelAdapter")
    return cls
