"""Fixtures for the notice-board tests: poppler-utils and zbar, the sample item, boards.

The PDF checks need poppler-utils (pdfinfo, pdftotext, pdftoppm) and the QR checks zbar
(Debian's libzbar0, through pyzbar). Without them the tests are skipped with the reason,
except in CI (CI=true), where a missing tool fails them: a check that silently does not
run proves nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from publisher.config import Config
from tests.conftest import SAMPLE, unavailable

TOOLS = ("pdfinfo", "pdftotext", "pdftoppm")


def need_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        message = f"poppler-utils missing ({', '.join(missing)}): apt-get install poppler-utils"
        unavailable(message)


def need_zbar() -> Any:
    try:
        from pyzbar import pyzbar
    except (ImportError, OSError) as exc:  # OSError: the module is there, libzbar0 is not
        message = f"zbar missing ({exc}): apt-get install libzbar0; pip install pyzbar"
        unavailable(message)
    return pyzbar


def sample_text() -> tuple[dict[str, str], list[str]]:
    """The sample's header fields and its body paragraphs (one per non-empty line)."""
    if not SAMPLE.exists():
        message = f"the sample is missing: {SAMPLE}"
        unavailable(message)
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    header: dict[str, str] = {}
    body: list[str] = []
    for line in lines:
        pairs = re.findall(r"([^|:：]+?)\s*[:：]\s*\|\s*([^|]*?)\s*\|", line)
        if pairs and not body:
            header.update({k.strip(): v.strip() for k, v in pairs})
        elif line.strip():
            body.append(line.strip())
    return header, body


def run(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], capture_output=True, check=True, text=True).stdout


def pdf_info(path: Path) -> dict[str, str]:
    out = {}
    for line in run("pdfinfo", path).splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def page_text(path: Path, page: int | None = None, *, raw: bool = False) -> str:
    """pdftotext of the PDF (or one page); `raw` keeps the drawing order, so a table's
    cells come out one after the other instead of line by line across the columns."""
    args: list[str | Path] = ["pdftotext", "-enc", "UTF-8", *(["-raw"] if raw else [])]
    if page is not None:
        args += ["-f", str(page), "-l", str(page)]
    return run(*args, path, "-")


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


FOOTER = re.compile(r"第\d+页/共\d+页")


def qr_codes(path: Path, page: int, tmp: Path) -> list[str]:
    """The QR codes zbar finds on one page rasterised at 150 dpi."""
    pyzbar = need_zbar()
    from PIL import Image

    prefix = tmp / f"page-{page}"
    run(
        "pdftoppm",
        "-r",
        "150",
        "-f",
        str(page),
        "-l",
        str(page),
        "-png",
        "-singlefile",
        path,
        prefix,
    )
    with Image.open(f"{prefix}.png") as image:
        return [code.data.decode() for code in pyzbar.decode(image)]


@pytest.fixture
def config(config_factory: Callable[..., Config], tmp_path: Path) -> Config:
    """The board tests' config: a fast engine, packs kept under tmp_path."""
    return config_factory(
        DELIVERY__POLL_SECONDS="0.05",
        DELIVERY__HEARTBEAT_SECONDS="1",
        CHANNELS__BOARD__SETTINGS__PACKS_DIR=str(tmp_path / "packs"),
    )
