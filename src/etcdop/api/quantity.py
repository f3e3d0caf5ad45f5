"""Kubernetes resource quantities ("10Gi", "500M", "1.5e9"), parsed the way the API server does.

We need them to validate storage sizes before the API server (and its CEL `isQuantity`) would.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<bin>Ki|Mi|Gi|Ti|Pi|Ei)|(?P<exp>[eE][+-]?[0-9]+)|(?P<dec>[numkMGTPE]?))$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity in base units; ValueError when it is not one."""
    m = _QUANTITY.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (examples: 10Gi, 500M, 1e9)")
    try:
        number = Decimal(m["num"])
    except InvalidOperation as e:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from e
    if m["bin"]:
        return number * _BINARY[m["bin"]]
    if m["exp"]:
        return number.scaleb(int(m["exp"][1:]))
    return number.scaleb(_DECIMAL[m["dec"] or ""])


def is_positive_quantity(text: str) -> bool:
    try:
        return parse_quantity(text) > 0
    except ValueError:
        return False
