"""Bulk import rows and list cursors, without a database."""

import pytest

from cmdb.errors import BadRequest
from cmdb.importer import parse_rows
from cmdb.schemas import RowError
from cmdb.views import decode_cursor, encode_cursor

pytestmark = pytest.mark.unit


def test_csv_rows_nest_dotted_columns_and_skip_empty_cells() -> None:
    rows = parse_rows("kind,id,labels.rack,replicas.min,address\nhost,h1,r7,2,\n", "csv")

    assert rows == [
        {"kind": "host", "id": "h1", "labels": {"rack": "r7"}, "replicas": {"min": "2"}}
    ]


def test_json_lines_that_are_not_objects_become_row_errors_with_their_numbers() -> None:
    rows = parse_rows('{"kind": "pool", "id": "p"}\n\n[1]\nnot json\n', "jsonl")

    assert rows[0] == {"kind": "pool", "id": "p"}
    assert isinstance(rows[1], RowError) and rows[1].row == 2
    assert isinstance(rows[2], RowError) and rows[2].msg.startswith("not JSON")


def test_a_cursor_round_trips_and_is_refused_for_another_sort_order() -> None:
    cursor = encode_cursor("-cpu_millis", 4000, "h1")

    assert decode_cursor(cursor, "-cpu_millis", numeric=True) == (4000, "h1")
    with pytest.raises(BadRequest, match="made for sort"):
        decode_cursor(cursor, "id", numeric=False)
    with pytest.raises(BadRequest, match="invalid cursor"):
        decode_cursor("%%%", "id", numeric=False)


@pytest.mark.parametrize(
    ("value", "item_id", "numeric"),
    [
        ("abc", "h1", True),
        (True, "h1", True),
        (10**400, "h1", True),
        (float("nan"), "h1", True),
        (5, "h1", False),
        ([1], "h1", False),
        ("a\x00", "h1", False),
        ("a", 7, False),
        ("a", "h" * 254, False),
    ],
)
def test_a_crafted_cursor_with_a_value_the_sort_cannot_compare_is_refused(
    value: object, item_id: object, numeric: bool
) -> None:
    cursor = encode_cursor("x", value, item_id)  # type: ignore[arg-type]

    with pytest.raises(BadRequest, match="not a position"):
        decode_cursor(cursor, "x", numeric=numeric)
