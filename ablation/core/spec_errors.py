"""A spec's validation errors in the spec's own words: each as `key: what was expected`, the key dotted
as the spec writes it, so a message names what to fix (and a retired key, what to write instead)."""

from __future__ import annotations

from pydantic import ValidationError

from ablation.core.model_spec import RETIRED


def describe(err: ValidationError) -> str:
    """pydantic's errors as `key: what was expected`, on one line."""
    return "; ".join(part for _, part in each_error(err))


def each_error(err: ValidationError) -> list[tuple[tuple[str, ...], str]]:
    """pydantic's errors as (where, `key: what was expected`)."""
    parts = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        key = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            parts.append((loc, f"{key}: {RETIRED.get(key, 'unknown key')}"))
        elif e["type"] == "missing":
            parts.append((loc, f"{key}: required key is missing"))
        elif e["type"] == "bool_for_number":  # its message says what it got, spelled as in YAML
            parts.append((loc, f"{key}: {e['msg']}"))
        else:
            message = e["msg"].removeprefix("Value error, ")
            value = repr(e.get("input"))
            got = "" if isinstance(e.get("input"), dict) or value in message else f" (got {value})"
            parts.append((loc, f"{key}: {message}{got}"))
    return parts

