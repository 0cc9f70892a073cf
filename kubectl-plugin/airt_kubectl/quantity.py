"""Kubernetes resource quantities (`500m`, `2`, `16Gi`, `1e9`) as numbers.

Pure; used by the node-fit summary of `kubectl airt plan`. CPU is counted in millicores and
everything else in plain units, so comparisons are exact integers.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIX: dict[str, int | Decimal] = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
_QUANTITY = re.compile(
    r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)


class QuantityError(ValueError):
    """Not a Kubernetes quantity."""


def amount(value: object) -> Decimal:
    """The quantity as a number of base units (cores, bytes, devices)."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise QuantityError(f"not a quantity: {text!r}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:
        raise QuantityError(f"not a quantity: {text!r}") from exc
    return number * Decimal(_SUFFIX[match.group(2) or ""])


def units(resource: str, value: object) -> int:
    """An integer to compare: millicores for `cpu`, base units (rounded up) for the rest."""
    n = amount(value) * (1000 if resource == "cpu" else 1)
    return int(n.to_integral_value(rounding="ROUND_CEILING"))


def show(resource: str, n: int) -> str:
    """A number of units as a person reads it: `1500m`, `16Gi`, `2`."""
    if resource == "cpu":
        return f"{n // 1000}" if n % 1000 == 0 else f"{n}m"
    if resource in ("memory", "ephemeral-storage"):
        for suffix in ("Ti", "Gi", "Mi", "Ki"):
            size = _SUFFIX[suffix]
            assert isinstance(size, int)
            if n >= size and n % size == 0:
                return f"{n // size}{suffix}"
    return str(n)
