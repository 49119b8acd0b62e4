"""How a point's values are written into one database row: the store's record format.

Version 3 (current): a byte 1, the id of the record's measure names in the store's
``measure_sets`` table (little-endian uint32), then one little-endian float64 per name, NaN and
infinities included. An agent reports the same measures at every evaluation, so the names are
stored once per database rather than once per point (with twelve measures a row takes a third
of the bytes it took in version 2).

Still read: version 2 wrote the names into every record (a JSON array and a NUL byte before
the float64s; also written past the store's cap on measure sets), version 1 stored the values
as JSON text with non-finite values as the strings ``"nan"``, ``"inf"``, ``"-inf"``.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from collections.abc import Mapping

_MARK = b"\x01"
"""The first byte of a version 3 record (a version 2 record starts with ``[``)."""
_SET_ID = struct.Struct("<I")
_HEAD = 1 + _SET_ID.size
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def set_prefix(set_id: int) -> bytes:
    """The version 3 record prefix: byte 1 and the measure-set id."""
    return _MARK + _SET_ID.pack(set_id)


def names_prefix(names: tuple[str, ...]) -> bytes:
    """The version 2 record prefix: the names as a JSON array and a NUL byte."""
    return json.dumps(names, separators=(",", ":")).encode() + b"\x00"  # ASCII: never a NUL


def pack(values: Mapping[str, float]) -> bytes:
    """The float64s of a record (after its prefix)."""
    floats = _floats(len(values))
    try:
        return floats.pack(*values.values())
    except (struct.error, TypeError):  # numbers that are not floats (numpy scalars, Fraction)
        return floats.pack(*(float(v) for v in values.values()))


def record_set(raw: bytes) -> int | None:
    """The measure-set id of a version 3 record; ``None`` for a version 2 record."""
    if raw[:1] != _MARK:
        return None
    (set_id,) = _SET_ID.unpack_from(raw, 1)
    return int(set_id)


def unpack(names: tuple[str, ...], raw: bytes) -> dict[str, float]:
    """The values of a version 3 record whose set holds ``names``."""
    return dict(zip(names, _floats(len(names)).unpack_from(raw, _HEAD), strict=True))


def decode_values(raw: bytes | str) -> dict[str, float]:
    """The values of a record of version 2 (or of a version 1 JSON text)."""
    if isinstance(raw, str):
        text = json.loads(raw)
        return {k: _NONFINITE[v] if isinstance(v, str) else float(v) for k, v in text.items()}
    cut = raw.index(0)
    names = _names_of(raw[:cut])
    return dict(zip(names, _floats(len(names)).unpack_from(raw, cut + 1), strict=True))


@functools.lru_cache(maxsize=1024)
def _names_of(header: bytes) -> tuple[str, ...]:
    return tuple(json.loads(header))


@functools.lru_cache(maxsize=1024)
def _floats(n: int) -> struct.Struct:
    return struct.Struct(f"<{n}d")
