"""Durations (``500ms``, ``2s``, ``1m30s``) and byte sizes (``64KiB``, ``10MiB``)."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_SIZE = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "KiB": 1024,
    "MB": 1000**2,
    "MiB": 1024**2,
    "GB": 1000**3,
    "GiB": 1024**3,
}


def parse_duration(text: str) -> float:
    """Seconds for a duration such as ``500ms``, ``2s``, ``1m30s`` or ``1.5s``.

    Parts go from the largest unit to the smallest, each unit at most once.
    Raises ``ValueError`` with the accepted forms otherwise.
    """
    pos = 0
    total = 0.0
    last_rank = -1
    order = ["h", "m", "s", "ms", "us", "µs", "ns"]
    for part in _DURATION_PART.finditer(text):
        if part.start() != pos:
            break
        rank = order.index(part.group(2))
        if rank <= last_rank:
            raise ValueError(f"invalid duration {text!r}: units must go from largest to smallest")
        last_rank = rank
        total += float(part.group(1)) * _DURATION_UNITS[part.group(2)]
        pos = part.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"invalid duration {text!r}: expected a number with a unit, like 500ms, 2s or 1m30s"
        )
    return total


def parse_size(value: int | str) -> int:
    """Bytes for a size: a plain integer or a string like ``64KiB``, ``10MiB``, ``1GB``."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value}: must not be negative")
        return value
    m = _SIZE.fullmatch(value.strip())
    if not m:
        raise ValueError(f"invalid size {value!r}: expected bytes, like 65536, 64KiB or 10MiB")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]
