"""The generated event catalogue: valid AsyncAPI 3.0, and in step with the committed docs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ooda.events import CATALOG
from ooda.events.catalog import asyncapi, json_schemas
from ooda.examples import example_payloads
from ooda.testing import REPO

pytestmark = pytest.mark.unit
TOOL = REPO / "tools" / "asyncapi"


def validate(document: dict[str, object], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if not (TOOL / "node_modules" / "@asyncapi" / "parser").exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to validate the AsyncAPI document"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TOOL, check=True)
    path = tmp_path / "asyncapi.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return subprocess.run(
        ["node", str(TOOL / "validate.mjs"), str(path)], capture_output=True, text=True, timeout=120
    )


def test_the_asyncapi_document_passes_the_official_parser(tmp_path: Path) -> None:
    result = validate(asyncapi(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(CATALOG)} channels" in result.stdout


def test_the_parser_check_fails_on_a_broken_document(tmp_path: Path) -> None:
    broken = asyncapi()
    broken["channels"]["metricObserved"]["messages"]["MetricObservedV1"]["$ref"] = "#/nowhere"
    result = validate(broken, tmp_path)
    assert result.returncode == 1


def test_the_committed_catalogue_matches_the_code() -> None:
    committed = yaml.safe_load((REPO / "docs" / "events" / "asyncapi.yaml").read_text())
    assert committed == asyncapi(), "run `make contracts` and commit docs/events"


def test_every_event_type_has_a_json_schema_and_an_example_that_fits_it() -> None:
    schemas = json_schemas()
    assert set(schemas) == {spec.type for spec in CATALOG}
    for payload in example_payloads():
        schema = schemas[next(s.type for s in CATALOG if s.model is type(payload))]
        assert set(schema["required"]) <= set(payload.model_dump())
