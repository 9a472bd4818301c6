"""The subscriber catalogue is generated from the contracts, and the contracts stay compatible
with what existing consumers were promised (the committed JSON Schemas in docs/events)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from pydantic import Field, ValidationError

from ooda.events import CATALOG, DeployDone, Payload
from ooda.events.catalog import json_schemas
from ooda_cli.catalogue import fields, generate

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "events" / "schemas"
CATALOGUE = REPO / "docs" / "catalogue"


def committed(event_type: str) -> dict[str, Any]:
    return dict(json.loads((COMMITTED / f"{event_type}.json").read_text()))


def _rfc3339(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def check_compatible(old: dict[str, Any], model: type[Payload], examples: int = 40) -> None:
    """Fail when data valid under the old schema is refused by `model` (old producers, or
    recorded events, would break the new consumer), or when what `model` accepts and emits is
    invalid under the old schema (the new producer would break old consumers)."""
    new = model.model_json_schema(mode="validation")
    validator = jsonschema.Draft202012Validator(old)
    budget = settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # the first counterexample is enough to fail
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )

    @budget
    @given(from_schema(old))
    def old_data_is_accepted(doc: dict[str, Any]) -> None:
        try:
            model.model_validate(doc)
        except ValidationError as exc:
            # JSON Schema's date-time is wider than RFC 3339 as Python reads it (e.g. second 60)
            if all(e["type"] == "datetime_from_date_parsing" for e in exc.errors()):
                return
            raise AssertionError(
                f"{model.__name__} refuses data valid under the contract: {exc}"
            ) from None

    @budget
    @given(from_schema(new))
    def new_data_is_valid_for_old_consumers(doc: dict[str, Any]) -> None:
        try:
            emitted = model.model_validate(doc).model_dump(mode="json")
        except ValidationError:
            return  # the producer could never emit it
        errors = [e.message for e in validator.iter_errors(emitted)]
        assert not errors, f"{model.__name__} emits data the contract refuses: {errors}"

    old_data_is_accepted()
    new_data_is_valid_for_old_consumers()


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.type)
def test_current_models_and_committed_schemas_accept_each_others_data(spec: Any) -> None:
    check_compatible(committed(spec.type), spec.model)


def test_a_new_required_field_breaks_existing_producers_and_the_check_says_so() -> None:
    class DeployDoneWithOwner(DeployDone):
        owner: str = Field(min_length=1)

    with pytest.raises(AssertionError, match="refuses data valid under the contract"):
        check_compatible(committed("io.ooda.deploy.done.v1"), DeployDoneWithOwner, 20)


def test_a_narrowed_field_breaks_existing_consumers_and_the_check_says_so() -> None:
    old = committed("io.ooda.deploy.done.v1")
    old["properties"]["outcome"] = {"enum": ["succeeded", "failed"], "type": "string"}
    with pytest.raises(AssertionError, match="emits data the contract refuses"):
        check_compatible(old, DeployDone, 40)


def test_the_committed_schemas_are_the_ones_the_contracts_generate() -> None:
    assert {p.stem for p in COMMITTED.glob("*.json")} == {s.type for s in CATALOG}
    for event_type, schema in json_schemas().items():
        assert committed(event_type) == json.loads(json.dumps(schema)), event_type


def test_the_committed_catalogue_is_what_the_generator_writes() -> None:
    pages = generate()
    assert sorted(pages) == sorted(p.name for p in CATALOGUE.glob("*.md"))
    for name, text in pages.items():
        assert (CATALOGUE / name).read_text() == text, f"{name} is stale: run ooda-catalogue"


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.topic)
def test_each_topic_page_names_key_types_fields_producer_example_and_how_to_consume(
    spec: Any,
) -> None:
    page = generate()[f"{spec.topic}.md"]
    assert f"`{spec.type}`" in page
    assert "the application id (`app`)" in page
    assert f"| producer | {spec.producer} |" in page
    for name in spec.model.model_fields:
        assert f"| `{name}` |" in page, name
    assert "## Example" in page and '"ce_type": "' + spec.type + '"' in page
    assert f"examples/subscriber.py {spec.topic}" in page
    assert f"from ooda.events import {spec.model.__name__}, decode" in page


def test_fields_flattens_nested_objects_and_lists_with_types_and_rules() -> None:
    found = {f["name"]: f for f in fields(DeployDone.model_json_schema())}
    assert found["instances[].endpoint"]["type"] == "string"
    assert found["replicas"]["rules"] == ">= 0"
    assert found["version"]["type"] == "string or null" and not found["version"]["required"]
    assert found["outcome"]["type"].startswith("one of `succeeded`")


@given(st.sampled_from(CATALOG))
@settings(max_examples=7, deadline=None, database=None)
def test_every_example_in_the_catalogue_validates_against_its_committed_schema(spec: Any) -> None:
    page = generate()[f"{spec.topic}.md"]
    value = page.split("Value:\n\n```json\n", 1)[1].split("\n```", 1)[0]
    jsonschema.validate(json.loads(value), committed(spec.type))
    spec.model.model_validate_json(value)
