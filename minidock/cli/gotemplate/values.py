"""How Go prints, quotes, marshals and judges the truth of a value: the data side of templates.

A dict is Go's ``map[string]interface{}``, a list ``[]interface{}``, an int ``int``, a float
``float64``; MISSING is what a missing map key evaluates to. Error messages name values by
:func:`go_type`, output prints them by :func:`go_value`.
"""

from __future__ import annotations

import json
import math
from typing import Any


class _Missing:
    """Go's invalid reflect.Value: what a missing map key evaluates to."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()


def go_float(x: float) -> str:
    """fmt's %v of a float64: the shortest digits, in exponent form when exp < -4 or >= 6."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1, x) < 0 else "0"
    # repr gives the shortest round-tripping digits, as strconv's 'g' with precision -1 does;
    # strconv then uses the %e form when the exponent is < -4 or >= 6 (its "eprec" for the
    # shortest form), which is why Go prints a float64 million as 1e+06. The digits are read
    # off repr's text ("1234.5", "1e+16", "1.5e-05"): ds without leading or trailing zeros,
    # worth int(ds) * 10**exp.
    text = repr(x)
    sign = text.startswith("-")
    number, _, e = text.lstrip("-").partition("e")
    whole, _, frac = number.partition(".")
    digits = (whole + frac).lstrip("0")
    ds = digits.rstrip("0")
    exp = (int(e) if e else 0) - len(frac) + len(digits) - len(ds)
    point = len(ds) + exp  # decimal point position relative to the digit string
    e10 = point - 1
    out: str
    if e10 < -4 or e10 >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        out = f"{mant}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    elif point <= 0:
        out = "0." + "0" * -point + ds
    elif point >= len(ds):
        out = ds + "0" * (point - len(ds))
    else:
        out = ds[:point] + "." + ds[point:]
    return ("-" if sign else "") + out


def go_value(obj: Any, top: bool = True) -> str:
    """How Go's text/template (fmt's %v) prints a decoded-JSON value."""
    if obj is MISSING:
        return "<no value>"
    if obj is None:
        # A nil interface read from a map prints "<no value>" at the top level (the template
        # engine unwraps it to an invalid value) but "<nil>" inside a list or map (fmt).
        return "<no value>" if top else "<nil>"
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return go_float(obj)
    if isinstance(obj, (list, tuple)):
        return "[" + " ".join(go_value(v, False) for v in obj) + "]"
    if isinstance(obj, dict):
        return "map[" + " ".join(
            f"{go_value(k, False)}:{go_value(obj[k], False)}" for k in sorted(obj, key=key_order)
        ) + "]"
    return str(obj)


def key_order(k: Any) -> Any:
    """The order fmt prints (and range walks) map keys in: numbers ascending, then strings."""
    return (0, k, "") if isinstance(k, (int, float)) else (1, 0, str(k))


def go_type(obj: Any) -> str:
    """The Go type name an error message would show for a value."""
    if obj is None or obj is MISSING:
        return "interface {}"
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, int):
        return "int"
    if isinstance(obj, float):
        return "float64"
    if isinstance(obj, str):
        return "string"
    if isinstance(obj, (list, tuple)):
        return "[]interface {}"
    if isinstance(obj, dict):
        return "map[string]interface {}"
    return type(obj).__name__


def _json_ready(obj: Any) -> Any:
    """Go's encoding/json writes integral floats without ".0"; Python's does not."""
    if isinstance(obj, float) and obj.is_integer() and abs(obj) < 1e21:
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    return None if obj is MISSING else obj


def to_json(obj: Any) -> str:
    """docker/cli's ``json`` function: compact, no HTML escaping, keys in the dict's order.

    (Go sorts map keys, but Docker's inspect structs marshal in field order, which is the
    order minidock builds its dicts in; keeping it matches ``docker inspect`` output.)
    """
    text = json.dumps(_json_ready(obj), ensure_ascii=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def is_true(value: Any) -> bool:
    """Go's template truth: false, 0, nil, missing and empty strings/lists/maps are false."""
    if value is MISSING or value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (str, list, tuple, dict)):
        return len(value) > 0
    return True
