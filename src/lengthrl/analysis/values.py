"""Reading numbers out of logged rows: None stays None, anything else must be a finite-or-inf float, never NaN."""

from __future__ import annotations

import math

from lengthrl.errors import DataError


def as_number(v: object, label: str, nan_hint: str = "") -> float | None:
    """`v` as a float (None -> None); a DataError naming `label` (e.g. "step 3: metric 'acc'") for a non-number
    or NaN, with `nan_hint` appended to the NaN message."""
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise DataError(f"{label} must be a number, got {v!r}") from None
    if math.isnan(v):
        raise DataError(f"{label} is NaN{nan_hint}")
    return v
