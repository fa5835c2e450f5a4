"""table-summary: a JSON summary of a CSV table, column by column.

The standard library's `csv` (with its dialect sniffer) and `statistics` do the work: a
table an engine hands over fits in memory, and pandas would add about 100 MB to every
process for the same figures.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from contract.description import FieldDescription, FieldType, ServiceDescription, Tag
from services.base import Blob, InvalidInput

DESCRIPTION = ServiceDescription(
    name="Table Summary",
    slug="table-summary",
    summary="Summarises a CSV table",
    description=(
        "Reads a CSV table with a header row (comma, semicolon, tab or pipe separated) and "
        "returns, for each column, its inferred type (integer, float, boolean, date, "
        "datetime or text), counts of values, missing and distinct values, min, max, mean, "
        "median and standard deviation of numbers, and the most frequent values."
    ),
    data_in_fields=[FieldDescription(name="table", type=[FieldType.TEXT_CSV])],
    data_out_fields=[FieldDescription(name="summary", type=[FieldType.APPLICATION_JSON])],
    tags=[Tag.DATA_PREPROCESSING],
    has_ai=False,
    docs_url="https://example.org/docs/table-summary",
)

FIELD = "table"
# Cells read as missing, compared without case.
MISSING = {"", "na", "n/a", "nan", "null", "none", "-"}
BOOLEANS = {"true": True, "false": False, "yes": True, "no": False}
TOP_VALUES = 5


def _is_int(cell: str) -> bool:
    try:
        int(cell)
    except ValueError:
        return False
    return True


def _is_float(cell: str) -> bool:
    try:
        value = float(cell)
    except ValueError:
        return False
    return value - value == 0  # not inf, which would poison every figure


def _is_date(cell: str) -> bool:
    try:
        date.fromisoformat(cell)
    except ValueError:
        return False
    return len(cell) == 10  # fromisoformat also takes 20240101


def _is_datetime(cell: str) -> bool:
    try:
        datetime.fromisoformat(cell)
    except ValueError:
        return False
    return not _is_date(cell) and len(cell) > 10


# The narrowest type whose test every value passes, tried in this order.
TYPES: list[tuple[str, Callable[[str], bool]]] = [
    ("integer", _is_int),
    ("float", _is_float),
    ("boolean", lambda cell: cell.lower() in BOOLEANS),
    ("date", _is_date),
    ("datetime", _is_datetime),
]


def infer_type(values: list[str]) -> str:
    """The type of a column from its non-missing values; `empty` when there are none."""
    if not values:
        return "empty"
    for name, test in TYPES:
        if all(test(value) for value in values):
            return name
    return "text"


def _numbers(numbers: list[int] | list[float], total: float) -> dict[str, Any]:
    return {
        "min": min(numbers),
        "max": max(numbers),
        "mean": round(statistics.fmean(numbers), 6),
        "median": statistics.median(numbers),
        "stddev": round(statistics.stdev(numbers), 6) if len(numbers) > 1 else 0.0,
        "sum": total,
    }


def _figures(kind: str, values: list[str]) -> dict[str, Any]:
    """What is worth knowing about the values of a column of this type."""
    if kind == "integer":
        integers = [int(value) for value in values]
        return _numbers(integers, sum(integers))
    if kind == "float":
        floats = [float(value) for value in values]
        return _numbers(floats, math.fsum(floats))  # fsum: 0.1 + 0.2 sums to 0.3
    if kind == "boolean":
        truths = sum(BOOLEANS[value.lower()] for value in values)
        return {"true": truths, "false": len(values) - truths}
    if kind in ("date", "datetime"):
        parse = date.fromisoformat if kind == "date" else datetime.fromisoformat
        try:
            ordered = sorted(values, key=parse)
        except TypeError:  # datetimes with and without a time zone have no order
            return {}
        return {"min": ordered[0], "max": ordered[-1]}
    if kind == "text":
        lengths = [len(value) for value in values]
        return {"min_length": min(lengths), "max_length": max(lengths)}
    return {}


def summarise_column(name: str, cells: list[str]) -> dict[str, Any]:
    values = [cell.strip() for cell in cells if cell.strip().lower() not in MISSING]
    kind = infer_type(values)
    # Values seen more than once: a column of distinct values has no frequent ones.
    top = [item for item in Counter(values).most_common(TOP_VALUES) if item[1] > 1]
    return {
        "name": name,
        "type": kind,
        "count": len(values),
        "missing": len(cells) - len(values),
        "distinct": len(set(values)),
        **_figures(kind, values),
        "top_values": [{"value": value, "count": count} for value, count in top],
    }


def read_rows(data: bytes) -> tuple[list[tuple[int, list[str]]], str]:
    """The non-blank rows of the table, each with the line it ends on, and the delimiter;
    InvalidInput for what is not a CSV table."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidInput(FIELD, f"not UTF-8 text (byte {error.start})") from None
    if not text.strip():
        raise InvalidInput(FIELD, "the table is empty")
    try:
        dialect: type[csv.Dialect] = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel  # a single column has no delimiter to sniff
    reader = csv.reader(io.StringIO(text), dialect, strict=True)
    try:
        rows = [(reader.line_num, row) for row in reader if row]
    except csv.Error as error:
        raise InvalidInput(FIELD, f"not a readable CSV table ({error})") from None
    return rows, dialect.delimiter


def summarise(data: bytes) -> dict[str, Any]:
    """The summary of a CSV table whose first row names the columns."""
    rows, delimiter = read_rows(data)
    header = rows[0][1]
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise InvalidInput(
                FIELD, f"line {line} has {len(row)} field(s), the header has {len(header)}"
            )
    body = [row for _, row in rows[1:]]
    columns = [[row[index] for row in body] for index in range(len(header))]
    return {
        "rows": len(body),
        "columns": len(header),
        "delimiter": delimiter,
        "duplicate_rows": len(body) - len({tuple(row) for row in body}),
        "column_summaries": [
            summarise_column(name, cells) for name, cells in zip(header, columns, strict=True)
        ],
    }


def process(inputs: Mapping[str, Blob]) -> dict[str, Blob]:
    """The summary of `table` as JSON."""
    summary = json.dumps(summarise(inputs[FIELD].data), indent=2, ensure_ascii=False)
    return {"summary": Blob(summary.encode(), FieldType.APPLICATION_JSON)}
