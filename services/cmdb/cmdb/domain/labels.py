"""Label rules: Kubernetes-style label keys and values, checked on every inventory item."""

import re
from typing import Annotated

from pydantic import AfterValidator

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_NAME_LENGTH = 63
MAX_PREFIX_LENGTH = 253


def name_problem(name: str, what: str = "name") -> str | None:
    """Why a label name (or value) breaks the rules, or None when it is valid."""
    if len(name) > MAX_NAME_LENGTH:
        return f"{what} {name!r} is longer than {MAX_NAME_LENGTH} characters"
    if not _NAME.match(name):
        return (
            f"{what} {name!r} must start and end with a letter or digit and contain only "
            "letters, digits, '-', '_' or '.'"
        )
    return None


def label_key_problem(key: str) -> str | None:
    """Why a label key breaks the rules, or None when it is valid."""
    parts = key.split("/")
    if len(parts) > 2:
        return f"key {key!r} has more than one '/'"
    if len(parts) == 2:
        prefix = parts[0]
        if len(prefix) > MAX_PREFIX_LENGTH or not _DNS_SUBDOMAIN.match(prefix):
            return (
                f"prefix {prefix!r} of key {key!r} must be a lowercase DNS subdomain "
                f"of at most {MAX_PREFIX_LENGTH} characters"
            )
    if not parts[-1]:
        return f"key {key!r} has an empty name"
    return name_problem(parts[-1])


def label_value_problem(value: str) -> str | None:
    """Why a label value breaks the rules, or None when it is valid (empty is valid)."""
    return None if value == "" else name_problem(value, "value")


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Return the labels unchanged, or raise ValueError naming every bad key or value."""
    problems = [
        problem
        for key, value in labels.items()
        for problem in (label_key_problem(key), label_value_problem(value))
        if problem
    ]
    if problems:
        raise ValueError("; ".join(problems))
    return labels


Labels = Annotated[dict[str, str], AfterValidator(check_labels)]
"""A label map whose keys and values follow the Kubernetes label rules."""
