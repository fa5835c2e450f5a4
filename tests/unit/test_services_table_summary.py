"""services.table_summary: a JSON summary of a CSV table, column by column."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract.description import FieldType
from services.base import Blob, InvalidInput, load_service
from services.table_summary import DESCRIPTION, infer_type, process

CITIES = """city,population,area,coastal,founded,visited
Zurich,421878,87.88,no,1218-01-01,2024-03-01T10:00:00
Geneva,203856,15.93,no,,2024-03-02T11:30:00
Lugano,62315,75.98,no,NA,
Basel,173863,23.91,No,1225-05-05,2024-03-04T09:15:00
"""


def summary(text: str | bytes) -> Any:
    data = text.encode() if isinstance(text, str) else text
    outputs = process({"table": Blob(data, FieldType.TEXT_CSV)})
    assert set(outputs) == {"summary"}
    assert outputs["summary"].type is FieldType.APPLICATION_JSON
    return json.loads(outputs["summary"].data)


def column(result: Any, name: str) -> Any:
    [found] = [item for item in result["column_summaries"] if item["name"] == name]
    return found


def test_table_shape() -> None:
    """Rows (without the header), columns, delimiter and duplicate rows."""
    result = summary(CITIES)
    assert (result["rows"], result["columns"], result["delimiter"]) == (4, 6, ",")
    assert result["duplicate_rows"] == 0
    assert [item["name"] for item in result["column_summaries"]] == CITIES.split("\n")[0].split(",")


def test_integer_column_figures() -> None:
    """An integer column has count, min, max, mean, median, sample stddev and sum."""
    assert column(summary(CITIES), "population") == {
        "name": "population",
        "type": "integer",
        "count": 4,
        "missing": 0,
        "distinct": 4,
        "min": 62315,
        "max": 421878,
        "mean": 215478.0,
        "median": 188859.5,
        "stddev": pytest.approx(150473.412577),
        "sum": 861912,
        "top_values": [],
    }


def test_float_column_sums_exactly() -> None:
    """A float column's figures, its sum without binary rounding noise."""
    area = column(summary(CITIES), "area")
    assert area["type"] == "float"
    assert (area["min"], area["max"], area["sum"]) == (15.93, 87.88, 203.7)
    assert area["mean"] == 50.925


def test_boolean_column_counts_and_frequent_values() -> None:
    """yes/no in any case is boolean, with true and false counts; repeated values are listed."""
    coastal = column(summary(CITIES), "coastal")
    assert coastal["type"] == "boolean"
    assert (coastal["true"], coastal["false"]) == (0, 4)
    assert coastal["top_values"] == [{"value": "no", "count": 3}]


def test_missing_values_and_dates() -> None:
    """Empty and NA cells are missing; ISO dates and datetimes give their range."""
    result = summary(CITIES)
    founded = column(result, "founded")
    assert founded["type"] == "date"
    assert (founded["count"], founded["missing"]) == (2, 2)
    assert (founded["min"], founded["max"]) == ("1218-01-01", "1225-05-05")
    visited = column(result, "visited")
    assert visited["type"] == "datetime"
    assert visited["missing"] == 1
    assert visited["max"] == "2024-03-04T09:15:00"


def test_text_column_lengths() -> None:
    """A text column has the shortest and longest length."""
    city = column(summary(CITIES), "city")
    assert city["type"] == "text"
    assert (city["min_length"], city["max_length"]) == (5, 6)


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["1", "-2", "30"], "integer"),
        (["1", "2.5", "1e3"], "float"),
        (["1", "inf"], "text"),
        (["True", "false", "YES"], "boolean"),
        (["2024-01-31", "1999-12-01"], "date"),
        (["20240131"], "integer"),
        (["2024-01-31T10:00:00", "2024-01-31 11:00"], "datetime"),
        (["2024-01-31", "2024-01-31T10:00:00"], "text"),
        (["a", "1"], "text"),
        ([], "empty"),
    ],
)
def test_infer_type(values: list[str], kind: str) -> None:
    """The narrowest type all values fit; infinity and mixed dates are text."""
    assert infer_type(values) == kind


def test_semicolon_table_with_bom_and_quotes() -> None:
    """A semicolon-separated table with a byte-order mark and quoted fields is read."""
    text = '\ufeffname;note\n"Müller; Hans";"said ""hi"""\nAnna;ok\nAnna;ok\n'
    result = summary(text.encode())
    assert result["delimiter"] == ";"
    assert result["duplicate_rows"] == 1
    name = column(result, "name")
    assert name["top_values"] == [{"value": "Anna", "count": 2}]
    assert name["max_length"] == len("Müller; Hans")


def test_single_column_and_header_only() -> None:
    """A one-column table has no delimiter to sniff; a header alone has zero rows."""
    assert column(summary("n\n1\n2\n3\n"), "n")["mean"] == 2.0
    result = summary("a,b\n")
    assert result["rows"] == 0
    assert column(result, "a")["type"] == "empty"


def test_mixed_time_zones_give_no_range() -> None:
    """Datetimes with and without a time zone cannot be ordered: no min or max."""
    visited = column(summary("t\n2024-01-01T10:00:00+01:00\n2024-01-01T10:00:00\n"), "t")
    assert visited["type"] == "datetime"
    assert "min" not in visited


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the table is empty"),
        (b" \n\n", "the table is empty"),
        (b"a,b\n\xff\xfe,1\n", "not UTF-8 text (byte 4)"),
        (b"a,b,c\n1,2,3\n\n4,5\n", "line 4 has 2 field(s), the header has 3"),
        (b'a,b\n"1,2\n', "not a readable CSV table (unexpected end of data)"),
    ],
    ids=["empty", "blank", "binary", "ragged", "open-quote"],
)
def test_bad_tables_are_invalid_input_naming_the_field(data: bytes, reason: str) -> None:
    """What is not a CSV table is InvalidInput for 'table' saying why."""
    with pytest.raises(InvalidInput) as caught:
        summary(data)
    assert caught.value.field == "table"
    assert caught.value.reason == reason


def test_description_is_csv_in_json_out() -> None:
    """table-summary declares one text/csv input and one application/json output."""
    assert load_service("services.table_summary").description is DESCRIPTION
    assert DESCRIPTION.slug == "table-summary"
    assert [(f.name, f.type) for f in DESCRIPTION.data_in_fields] == [
        ("table", [FieldType.TEXT_CSV])
    ]
    assert [(f.name, f.type) for f in DESCRIPTION.data_out_fields] == [
        ("summary", [FieldType.APPLICATION_JSON])
    ]
