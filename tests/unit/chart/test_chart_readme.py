"""The chart's README (what Artifact Hub shows): its values table is the one the schema gives.

`make generate` writes the table (devtools/airt_dev/chartdoc.py); this test fails when the
committed README has drifted from values.schema.json or values.yaml, naming the fix.
"""

from __future__ import annotations

import json

from chart_helpers import CHART

from airt_dev import chartdoc

README = CHART / "README.md"


def test_values_table_is_generated_from_the_schema() -> None:
    text = README.read_text()
    assert chartdoc.render(text) == text, "charts/airt/README.md drifted: run `make generate`"


def test_every_value_has_a_row() -> None:
    table = chartdoc.table()
    schema = json.loads((CHART / "values.schema.json").read_text())
    for key, node in schema["properties"].items():
        assert f"| `{key}` |" in table, key
        if node.get("additionalProperties") is False:
            for child in node.get("properties") or {}:
                assert f"| `{key}.{child}` |" in table, f"{key}.{child}"
