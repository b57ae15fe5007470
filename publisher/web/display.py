"""How a resident wants the public pages shown (适老化): large type, high contrast, or both.

The choice is a cookie (`gk_display`), set by plain links to `/display` that redirect
back to the page they came from: no script, no pop-up, and it holds on every public
page until changed. A page's look depends on the cookie, so the pages vary on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from aiohttp import web

COOKIE = "gk_display"
#: a year: the choice should outlast a browser restart
COOKIE_MAX_AGE = 365 * 24 * 3600
MAX_BACK = 2000


@dataclass(frozen=True, slots=True)
class Display:
    large: bool = False
    contrast: bool = False

    @classmethod
    def parse(cls, value: str | None) -> Display:
        words = set((value or "").split("."))
        return cls(large="large" in words, contrast="contrast" in words)

    @property
    def cookie_value(self) -> str:
        return ".".join(w for w, on in (("large", self.large), ("contrast", self.contrast)) if on)

    @property
    def classes(self) -> str:
        """The classes of <html> that switch the stylesheet's modes on."""
        return " ".join(w for w, on in (("large", self.large), ("contrast", self.contrast)) if on)


def display_of(request: web.Request) -> Display:
    return Display.parse(request.cookies.get(COOKIE))


def safe_back(prefix: str, value: str | None) -> str:
    """Where a display link returns to: a path on this site, never elsewhere."""
    home = prefix + "/"
    if not value or len(value) > MAX_BACK:
        return home
    parts = urlsplit(value)
    if (
        parts.scheme
        or parts.netloc
        or not value.startswith(home)
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x20 for c in value)
    ):
        return home
    return value


def toggle_urls(prefix: str, display: Display, back: str) -> dict[str, str]:
    """The two links of the page header: each flips one mode and comes back to `back`."""
    return {
        "large_url": f"{prefix}/display?"
        + urlencode({"large": "0" if display.large else "1", "back": back}),
        "contrast_url": f"{prefix}/display?"
        + urlencode({"contrast": "0" if display.contrast else "1", "back": back}),
    }
