"""Label selectors in Kubernetes syntax: parse `app=web,zone in (a,b),!legacy` and match labels."""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from cmdb.domain.labels import label_key_problem, label_value_problem

_SPECIAL = ",()=!"


class Operator(StrEnum):
    """How a requirement tests one label."""

    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True)
class Requirement:
    """One comma-separated clause of a selector, e.g. `zone in (a,b)`."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the labels satisfy this clause (`!=` and `notin` also match a missing key)."""
        present = self.key in labels
        value = labels.get(self.key)
        match self.operator:
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present
            case Operator.EQUALS | Operator.IN:
                return present and value in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return not present or value not in self.values


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the labels satisfy every requirement."""
        return all(requirement.matches(labels) for requirement in self.requirements)


class SelectorError(ValueError):
    """A selector that cannot be parsed, with the position and what was expected there."""

    def __init__(self, text: str, position: int, expected: str, found: str) -> None:
        self.text = text
        self.position = position
        self.expected = expected
        self.found = found
        super().__init__(
            f"invalid selector {text!r} at position {position}: expected {expected}, found {found}"
        )


@dataclass(frozen=True)
class _Token:
    text: str
    position: int
    is_word: bool

    def describe(self) -> str:
        if not self.text:
            return "end of selector"
        return repr(self.text)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif text.startswith(("==", "!="), i):
            tokens.append(_Token(text[i : i + 2], i, False))
            i += 2
        elif char in _SPECIAL:
            tokens.append(_Token(char, i, False))
            i += 1
        else:
            start = i
            while i < len(text) and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            tokens.append(_Token(text[start:i], start, True))
    tokens.append(_Token("", len(text), False))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        if token.text:
            self.index += 1
        return token

    def fail(self, token: _Token, expected: str) -> SelectorError:
        return SelectorError(self.text, token.position, expected, token.describe())

    def at_clause_end(self) -> bool:
        return self.peek().text in ("", ",")

    def key(self) -> str:
        token = self.take()
        if not token.is_word:
            raise self.fail(token, "a label key")
        problem = label_key_problem(token.text)
        if problem:
            raise SelectorError(self.text, token.position, "a valid label key", problem)
        return token.text

    def value(self) -> str:
        token = self.take()
        if not token.is_word:
            raise self.fail(token, "a label value")
        problem = label_value_problem(token.text)
        if problem:
            raise SelectorError(self.text, token.position, "a valid label value", problem)
        return token.text

    def value_set(self) -> tuple[str, ...]:
        opening = self.take()
        if opening.text != "(":
            raise self.fail(opening, "'('")
        values = [self.value()]
        while (token := self.take()).text != ")":
            if token.text != ",":
                raise self.fail(token, "',' or ')'")
            values.append(self.value())
        return tuple(values)

    def requirement(self) -> Requirement:
        if self.peek().text == "!":
            self.take()
            return Requirement(self.key(), Operator.DOES_NOT_EXIST)
        key = self.key()
        if self.at_clause_end():
            return Requirement(key, Operator.EXISTS)
        token = self.take()
        if token.text in ("=", "=="):
            return Requirement(key, Operator.EQUALS, (self.optional_value(),))
        if token.text == "!=":
            return Requirement(key, Operator.NOT_EQUALS, (self.optional_value(),))
        if token.is_word and token.text in ("in", "notin"):
            return Requirement(key, Operator(token.text), self.value_set())
        raise self.fail(token, "'=', '==', '!=', 'in', 'notin', ',' or end of selector")

    def optional_value(self) -> str:
        return "" if self.at_clause_end() else self.value()

    def selector(self) -> Selector:
        if not self.peek().text:
            return Selector()
        requirements = [self.requirement()]
        while (token := self.take()).text:
            if token.text != ",":
                raise self.fail(token, "',' or end of selector")
            requirements.append(self.requirement())
        return Selector(tuple(requirements))


def parse_selector(text: str) -> Selector:
    """Parse a Kubernetes label selector, raising SelectorError with the position of the fault."""
    return _Parser(text).selector()
