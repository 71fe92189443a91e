"""The model summary rows and their text / HTML tables (pure functions)."""

from __future__ import annotations

import keras
from tiny_models import nested_flat_cnn

from cnnwidgets.explain.receptive_field import ReceptiveField
from cnnwidgets.explain.summary import (
    SummaryRow,
    format_rf,
    format_shape,
    format_table,
    html_table,
    summary_rows,
    table_cells,
    total_params,
    visible_rows,
)

L = keras.layers


def test_demo_rows(shapes_model, shapes_probe):
    rows = summary_rows(shapes_probe)
    assert [r.name for r in rows] == ["input"] + [layer.name for layer in shapes_model.layers[1:]]
    assert (
        rows[0].kind == "InputLayer" and rows[0].shape == (64, 64, 3) and rows[0].rf.size == (1, 1)
    )
    by = {r.name: r for r in rows}
    conv = by["block3_conv2"]
    assert conv.kind == "Conv2D" and conv.shape == (16, 16, 64)
    assert conv.params == 3 * 3 * 64 * 64 + 64
    assert conv.rf.size == (32, 32) and conv.inspectable and conv.depth == 0
    assert by["gap"].shape == (64,) and not by["gap"].inspectable
    assert by["block1_conv1"].parents == ("rescale",)
    assert total_params(rows) == shapes_model.count_params()


def test_nested_model_rows_come_before_their_layers():
    model = nested_flat_cnn()
    rows = summary_rows(model)
    assert [r.name for r in rows][1:] == ["base", "base/a", "base/mp", "flat", "head"]
    rows = rows[1:]
    assert rows[0].is_model and not rows[0].inspectable and rows[0].params == 4 * 27 + 4
    assert [r.depth for r in rows] == [0, 1, 1, 0, 0]
    assert rows[0].rf == rows[2].rf  # the container carries its output's field
    assert total_params(rows) == model.count_params()  # base counted once
    assert [r.name for r in visible_rows(rows)] == ["base", "flat", "head"]
    assert len(visible_rows(rows, ["base"])) == 5


def _row(name, kind, shape, params, rf=None, is_model=False):
    return SummaryRow(
        name=name,
        kind=kind,
        shape=shape,
        params=params,
        rf=rf,
        depth=name.count("/"),
        is_model=is_model,
        inspectable=len(shape) == 3 and not is_model,
    )


def test_tables_from_hand_made_rows():
    # Pure data in, text out: gradable without a model.
    rf3 = ReceptiveField((3, 3), (1, 1), (1.0, 1.0))
    rows = [
        _row("m", "Functional", (6, 6, 2), 56, rf3, is_model=True),
        _row("m/conv", "Conv2D", (6, 6, 2), 56, rf3),
        _row("flat", "Flatten", (72,), 0, None),
        _row("out", "Dense", (3,), 219, None),
    ]
    assert total_params(rows) == 56 + 219
    assert format_shape((None, 8, 8, 3)) == "(?, 8, 8, 3)"
    assert format_rf(rf3) == "3 px / 1" and format_rf(None) == "-"
    assert format_rf(ReceptiveField((3, 5), (1, 2), (1.0, 2.0))) == "3x5 px / 1x2"
    assert table_cells(rows[0], []) == ["+ m", "Functional", "(6, 6, 2)", "56", "3 px / 1", ""]
    assert table_cells(rows[1], ["m"])[0] == "  conv" and table_cells(rows[1])[-1] == "*"

    text = format_table(rows, title="toy")
    lines = text.splitlines()
    assert lines[0] == "toy" and lines[1].startswith("Layer")
    assert any(line.startswith("  conv") and "3 px / 1" in line for line in lines)
    assert lines[-1].startswith("Total params: 275")
    folded = format_table(rows, expanded=[])
    assert "conv" not in folded and "+ m" in folded

    page = html_table(rows, selected="out", title="a <b> model")
    assert page.startswith("<table") and "a &lt;b&gt; model" in page
    assert page.count("<tr") == 1 + 4 + 1  # header, rows, total
    assert "background:#dbe9ff" in page


def test_demo_table_text(shapes_model, shapes_probe):
    text = format_table(summary_rows(shapes_probe))
    assert "block3_conv2  Conv2D" in text and "32 px / 4" in text
    assert f"Total params: {shapes_model.count_params():,}" in text
