"""The model summary as data: one row per layer with kind, output shape,
parameters and receptive field, plus text and HTML tables of it.

``summary_rows`` reads the Probe's layer catalog once; everything after that
(``total_params``, ``format_table``, ``html_table``, ``visible_rows``) is
plain Python on the rows, so an instructor can grade a student's table
without a browser or a model.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cnnwidgets.explain.receptive_field import INPUT_FIELD, ReceptiveField, receptive_fields
from cnnwidgets.probe import as_probe

__all__ = [
    "COLUMNS",
    "SummaryRow",
    "format_rf",
    "format_shape",
    "format_table",
    "html_table",
    "summary_rows",
    "table_cells",
    "total_params",
    "visible_rows",
]

#: Column titles of the text and HTML tables, in order.
COLUMNS: tuple[str, ...] = ("Layer", "Type", "Output shape", "Param #", "Receptive field", "")


@dataclass(frozen=True)
class SummaryRow:
    """One layer of the summary.

    Attributes:
        name: the path ('outer/inner' inside a nested model).
        kind: the layer class name.
        shape: the output shape without the batch axis, e.g. (16, 16, 64).
        params: number of weights (a nested model counts all of its layers).
        rf: the receptive field, or None where it is not defined.
        depth: nesting level (0 for the model's own layers).
        is_model: True for a nested model (its layers follow it with depth + 1).
        inspectable: True for layers with (H, W, C) outputs, the ones the
            ActivationBrowser, FilterGallery and Grad-CAM can look at.
        parents: paths of the layers feeding this one ('input' for the input).
    """

    name: str
    kind: str
    shape: tuple
    params: int
    rf: ReceptiveField | None
    depth: int
    is_model: bool
    inspectable: bool
    parents: tuple[str, ...] = ()

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]


def summary_rows(model_or_probe: Any) -> list[SummaryRow]:
    """The summary of a model: its input, then its layers in graph order,
    nested models placed before their own layers (as ``model.summary()``
    lists them).

    Args:
        model_or_probe: a keras.Model or cnnwidgets.Probe.

    Returns:
        list of :class:`SummaryRow`; the first is the input ('input',
        kind 'InputLayer', its field one pixel), named as in ``LayerInfo.parents``.
    """
    probe = as_probe(model_or_probe)
    infos = probe.layers
    fields = receptive_fields(probe)
    first = SummaryRow(
        name="input",
        kind="InputLayer",
        shape=tuple(probe.input_shape[1:]),
        params=0,
        rf=INPUT_FIELD,
        depth=0,
        is_model=False,
        inspectable=False,
    )
    rows = [
        SummaryRow(
            name=i.name,
            kind=i.kind,
            shape=tuple(i.output_shape[1:]),
            params=int(i.params),
            rf=fields.get(i.name),
            depth=i.name.count("/"),
            is_model=i.is_model,
            inspectable=i.is_4d and not i.is_model,
            parents=tuple(i.parents),
        )
        for i in infos
    ]
    return [first] + _containers_first(rows)


def _containers_first(rows: list[SummaryRow]) -> list[SummaryRow]:
    """The Probe records a nested model after its layers; move it before them."""
    out: list[SummaryRow] = []
    for row in rows:
        if row.is_model:
            prefix = row.name + "/"
            at = next(
                (k for k, r in enumerate(out) if r.name.startswith(prefix)),
                len(out),
            )
            out.insert(at, row)
        else:
            out.append(row)
    return out


def total_params(rows: Iterable[SummaryRow]) -> int:
    """All weights of the model: the sum over layers, nested models not counted twice."""
    return int(sum(r.params for r in rows if not r.is_model))


def visible_rows(rows: Sequence[SummaryRow], expanded: Iterable[str] = ()) -> list[SummaryRow]:
    """The rows shown when only the nested models named in ``expanded`` are open."""
    opened = set(expanded)
    shown = []
    for r in rows:
        parts = r.name.split("/")
        outers = ["/".join(parts[:k]) for k in range(1, len(parts))]
        if all(o in opened for o in outers):
            shown.append(r)
    return shown


def format_shape(shape: tuple) -> str:
    """'(16, 16, 64)'; unknown sizes as '?'; '' for a layer with several outputs."""
    if not shape:
        return ""
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def format_rf(rf: ReceptiveField | None) -> str:
    """'40 px / 4' (size / jump); '40x20 px / 4x2' for a rectangle; '-' if undefined."""
    if rf is None:
        return "-"
    if rf.is_square:
        return f"{rf.size[0]} px / {rf.jump[0]}"
    return f"{rf.size[0]}x{rf.size[1]} px / {rf.jump[0]}x{rf.jump[1]}"


def table_cells(row: SummaryRow, expanded: Iterable[str] = ()) -> list[str]:
    """The row's cells as strings, in :data:`COLUMNS` order.

    The name is indented two spaces per nesting level; a nested model gets a
    fold marker ('+' closed, '-' open); the last cell marks inspectable layers."""
    indent = "  " * row.depth
    if row.is_model:
        marker = "- " if row.name in set(expanded) else "+ "
        name = indent + marker + row.short_name
    else:
        name = indent + row.short_name
    return [
        name,
        row.kind,
        format_shape(row.shape),
        f"{row.params:,}",
        format_rf(row.rf),
        "*" if row.inspectable else "",
    ]


def format_table(
    rows: Sequence[SummaryRow], expanded: Iterable[str] | None = None, title: str = ""
) -> str:
    """A plain-text table like ``model.summary()``, with a receptive-field column.

    Args:
        rows: from :func:`summary_rows`.
        expanded: nested models whose layers are listed (None: all).
        title: optional first line.

    Returns:
        str, one line per visible row, then the total parameter count.
    """
    expanded = [r.name for r in rows if r.is_model] if expanded is None else list(expanded)
    shown = visible_rows(rows, expanded)
    cells = [list(COLUMNS)] + [table_cells(r, expanded) for r in shown]
    widths = [max(len(c[k]) for c in cells) for k in range(len(COLUMNS))]
    lines = [title] if title else []
    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    for n, c in enumerate(cells):
        line = "  ".join(
            c[k].rjust(widths[k]) if k == 3 else c[k].ljust(widths[k]) for k in range(len(c))
        )
        lines.append(line.rstrip())
        if n == 0:
            lines.append(rule)
    lines.append(rule)
    lines.append(
        f"Total params: {total_params(rows):,}   (* = inspectable (H, W, C) layer; "
        "receptive field: size px / jump)"
    )
    return "\n".join(lines)


def html_table(
    rows: Sequence[SummaryRow],
    expanded: Iterable[str] | None = None,
    selected: str | None = None,
    title: str = "",
) -> str:
    """The same table as HTML (for ``text/html`` outputs and the live widget).

    The ``selected`` layer's row is highlighted."""
    expanded = [r.name for r in rows if r.is_model] if expanded is None else list(expanded)
    esc = html.escape
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{esc(c)}</th>" for c in COLUMNS)
    body = []
    for r in visible_rows(rows, expanded):
        cells = table_cells(r, expanded)
        style = "background:#dbe9ff;" if r.name == selected else ""
        if r.is_model:
            style += "font-weight:bold;"
        tds = []
        for k, c in enumerate(cells):
            align = "right" if k == 3 else "left"
            text = esc(c).replace(" ", "&nbsp;") if k == 0 else esc(c)
            tds.append(f"<td style='text-align:{align};padding:1px 8px'>{text}</td>")
        body.append(f"<tr style='{style}' title='{esc(r.name)}'>{''.join(tds)}</tr>")
    cap = f"<caption style='text-align:left'>{esc(title)}</caption>" if title else ""
    foot = (
        f"<tr><td colspan='{len(COLUMNS)}' style='padding:2px 8px'>Total params: "
        f"{total_params(rows):,} &nbsp; (* = inspectable (H, W, C) layer; "
        "receptive field: size px / jump)</td></tr>"
    )
    return (
        "<table style='border-collapse:collapse;font-family:monospace;font-size:12px'>"
        f"{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}{foot}</tbody></table>"
    )
