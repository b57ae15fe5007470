"""Gongkai Publisher (公开): publish once, reach everyone.

The core package knows no specific channel; adapters live in the top-level
``channels`` package.
"""

from __future__ import annotations

__version__ = "0.1.0"
