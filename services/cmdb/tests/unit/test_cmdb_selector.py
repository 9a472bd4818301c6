"""Label selectors: Kubernetes syntax, matching rules, and parse errors that point at the fault."""

import pytest

from cmdb.domain import Operator, Requirement, SelectorError, parse_selector

pytestmark = pytest.mark.unit

LABELS = {"app": "web", "zone": "a", "tier": "frontend", "env": "prod"}


def test_the_full_kubernetes_syntax_parses_into_requirements() -> None:
    selector = parse_selector("app=web,zone in (a,b),tier!=db,!legacy,env notin (dev)")

    assert selector.requirements == (
        Requirement("app", Operator.EQUALS, ("web",)),
        Requirement("zone", Operator.IN, ("a", "b")),
        Requirement("tier", Operator.NOT_EQUALS, ("db",)),
        Requirement("legacy", Operator.DOES_NOT_EXIST),
        Requirement("env", Operator.NOT_IN, ("dev",)),
    )


def test_a_selector_matches_labels_meeting_every_requirement() -> None:
    selector = parse_selector("app=web,zone in (a,b),tier!=db,!legacy,env notin (dev)")

    assert selector.matches(LABELS)
    assert not selector.matches({**LABELS, "zone": "c"})
    assert not selector.matches({**LABELS, "legacy": "true"})
    assert not selector.matches({**LABELS, "env": "dev"})
    assert not selector.matches({**LABELS, "tier": "db"})


def test_not_equals_and_notin_match_when_the_key_is_missing() -> None:
    assert parse_selector("tier!=db").matches({})
    assert parse_selector("env notin (dev)").matches({})
    assert not parse_selector("app=web").matches({})
    assert not parse_selector("zone in (a)").matches({})


def test_a_bare_key_requires_the_label_to_exist_with_any_value() -> None:
    selector = parse_selector("canary")

    assert selector.matches({"canary": ""})
    assert not selector.matches({"app": "web"})


def test_double_equals_and_whitespace_are_accepted() -> None:
    selector = parse_selector("  app == web ,  zone in ( a , b )  ")

    assert selector.requirements == (
        Requirement("app", Operator.EQUALS, ("web",)),
        Requirement("zone", Operator.IN, ("a", "b")),
    )


def test_an_empty_value_matches_an_empty_label() -> None:
    selector = parse_selector("owner=")

    assert selector.matches({"owner": ""})
    assert not selector.matches({"owner": "x"})


def test_the_empty_selector_matches_everything() -> None:
    assert parse_selector("").matches({})
    assert parse_selector("   ").matches(LABELS)


def test_prefixed_keys_are_accepted() -> None:
    assert parse_selector("example.com/team=payments").matches({"example.com/team": "payments"})


@pytest.mark.parametrize(
    ("text", "position", "expected", "found"),
    [
        ("app=web,", 8, "a label key", "end of selector"),
        ("zone in a,b", 8, "'('", "'a'"),
        ("zone in (a,b", 12, "',' or ')'", "end of selector"),
        ("zone in ()", 9, "a label value", "')'"),
        ("app=web tier=db", 8, "',' or end of selector", "'tier'"),
        ("app ~ web", 4, "'=', '==', '!=', 'in', 'notin', ',' or end of selector", "'~'"),
        ("!", 1, "a label key", "end of selector"),
        ("=web", 0, "a label key", "'='"),
        ("app=web=x", 7, "',' or end of selector", "'='"),
    ],
)
def test_parse_errors_give_the_position_and_what_was_expected(
    text: str, position: int, expected: str, found: str
) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)

    assert (caught.value.position, caught.value.expected, caught.value.found) == (
        position,
        expected,
        found,
    )
    assert f"at position {position}: expected {expected}" in str(caught.value)


def test_a_key_breaking_the_label_rules_is_refused_with_the_rule() -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector("app=web,-bad=x")

    assert caught.value.position == 8
    assert caught.value.expected == "a valid label key"
    assert "must start and end with a letter or digit" in caught.value.found


def test_a_value_longer_than_63_characters_is_refused() -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector("app=" + "v" * 64)

    assert caught.value.position == 4
    assert "longer than 63" in caught.value.found
