"""The difference between the spec the CMDB holds and the one a manifest declares."""

from __future__ import annotations

from typing import Any

# Fields the CMDB adds to a stored spec; never part of what a user declares.
SPEC_METADATA = frozenset({"id", "kind", "revision"})


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out |= _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: value}


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return float(a) == float(b)
    return bool(a == b)


def diff_specs(
    current: dict[str, Any] | None, declared: dict[str, Any]
) -> list[tuple[str, str, Any]]:
    """`(sign, dotted.path, shown value)` per difference: `+` added, `~` changed, `-` removed.

    A field the CMDB holds but the manifest leaves out counts as removed only when it has a
    value (the CMDB fills empty defaults such as `labels: {}` or `budget: null`).
    """
    before = _flatten({k: v for k, v in (current or {}).items() if k not in SPEC_METADATA})
    after = _flatten(declared)
    changes: list[tuple[str, str, Any]] = []
    for path, value in after.items():
        if path not in before:
            if not _empty(value):
                changes.append(("+", path, value))
        elif not _same(before[path], value):
            changes.append(("~", path, f"{before[path]} -> {value}"))
    for path, value in before.items():
        if (
            path not in after
            and not _empty(value)
            and not any(path.startswith(p + ".") for p in after)
        ):
            changes.append(("-", path, value))
    return sorted(changes, key=lambda c: c[1])
