"""The report's tables: the headline, the correctness matrix as coloured HTML
(readable at any width, numbers as text), and the numeric timing tables a
reader can sort and filter in the page without a network."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from adjointbench.reports.plots import OUTCOME_COLOURS, SEVERITY, bench_ok
from adjointbench.suites.bench import deferred_work, missed_work, too_many_cores
from adjointbench.suites.comparison import format_seconds
from adjointbench.suites.cells import ALL_OPS
from adjointbench.suites.results import FAILURES
from adjointbench.suites.tolerance import EPS

COST_OPS = ("jvp", "vjp", "batched_jacobian", "hvp", "gradient")


# --- headline ---

def implementation_headline(frame: pd.DataFrame) -> pd.DataFrame:
    """Per implementation: check cells ok / failed / unsupported, and the
    geometric mean cost over the primal of each operation it was timed on
    (float64, paired ratios)."""
    check = frame[frame["suite"] == "check"]
    timed = bench_ok(frame)
    timed = timed[timed["dtype"] == "float64"]
    rows = []
    for impl in sorted(frame["impl"].dropna().unique()):
        mine = check[check["impl"] == impl]["outcome"]
        row = {"implementation": impl, "ok": int((mine == "ok").sum()),
               "failed": int(mine.isin(FAILURES).sum()),
               "ill-conditioned": int((mine == "ill_conditioned").sum()),
               "unsupported": int((mine == "unsupported").sum())}
        mine_timed = timed[timed["impl"] == impl]
        for op in COST_OPS:
            ratios = mine_timed[mine_timed["op"] == op]["ratio_to_primal"].dropna()
            ratios = ratios[ratios > 0]
            row[f"{op} / primal"] = (f"{float(np.exp(np.log(ratios).mean())):.3g}"
                                     if len(ratios) else "")
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    empty = [c for c in table.columns if c.endswith("/ primal") and (table[c] == "").all()]
    return table.drop(columns=empty)


# What a timed cell's verdict is keyed by: the same rule, whatever its size
VERDICT_KEY = ["impl", "problem", "op", "method", "dtype", "device"]
NOT_CHECKED = "not checked"


def with_check_verdict(timed: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """``timed`` with a ``checked`` column: the worst outcome of the check
    cells of the same implementation, problem, operation, method, dtype and
    device (over sizes and input points), or "not checked", so that a fast
    time is never read apart from whether the rule behind it is right."""
    check = frame[frame["suite"] == "check"].reindex(columns=VERDICT_KEY + ["outcome"])
    check = _keyed(check[check["outcome"] != "unsupported"])
    worst = check.groupby(VERDICT_KEY)["outcome"].agg(_worst).rename("checked")
    keys = _keyed(timed.reindex(columns=VERDICT_KEY))
    checked = keys.merge(worst, left_on=VERDICT_KEY, right_index=True, how="left")["checked"]
    return timed.assign(checked=checked.fillna(NOT_CHECKED).to_numpy())


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """The key columns as objects, a missing method as "" (so that it matches)."""
    return frame.assign(**{k: frame[k].astype(object).fillna("") for k in VERDICT_KEY})


def fastest_headline(frame: pd.DataFrame) -> pd.DataFrame:
    """Per operation, at each problem's smallest and largest timed size: how
    often each implementation was the fastest (float64, CPU), among the cells
    whose rule did not fail its check and whose timing did not miss work
    (suites/bench.py's missed_work: done in to_numpy, or cheaper than the
    forward pass it includes) or keep more cores busy than its threads
    (too_many_cores). An implementation that left work to to_numpy in any
    cell is left out entirely: below the warning's floor its small cells
    hide the same."""
    timed = with_check_verdict(bench_ok(frame), frame)
    timed = timed[(timed["dtype"] == "float64") & (timed["device"] == "cpu")
                  & ~timed["checked"].isin(FAILURES)]
    deferring = {row["impl"] for _, row in timed.iterrows() if deferred_work(row)}
    believed = pd.Series([not missed_work(row, row["op"]) and not too_many_cores(row)
                          and row["impl"] not in deferring
                          for _, row in timed.iterrows()], index=timed.index, dtype=bool)
    timed = timed[believed]
    rows = []
    for op, by_op in timed.groupby("op"):
        for which, pick in (("smallest", "min"), ("largest", "max")):
            sizes = by_op.groupby("problem")["size"].transform(pick)
            at = by_op[by_op["size"] == sizes]
            contested = at.groupby(["problem", "size"]).filter(lambda g: g["impl"].nunique() > 1)
            if contested.empty:
                continue
            winners = contested.loc[contested.groupby(["problem", "size", "method"],
                                                      dropna=False)["time_median_s"].idxmin()]
            counts = winners["impl"].value_counts()
            rows.append({"operation": op, "size": which,
                         "fastest (problems won)": ", ".join(f"{i} {n}" for i, n in
                                                             counts.items()),
                         "problems": int(winners[["problem", "method"]].drop_duplicates()
                                         .shape[0])})
    return pd.DataFrame(rows, columns=["operation", "size", "fastest (problems won)", "problems"])


# --- correctness matrix, as HTML ---

def _worst(outcomes: pd.Series) -> str:
    return min(outcomes, key=SEVERITY.index)


def _matrix_cell(outcome, error: float) -> str:
    if not isinstance(outcome, str):
        return "<td></td>"
    number = ""
    if outcome not in ("unsupported",) and np.isfinite(error):
        number = f"{error:.0f}" if error < 1e3 else f"{error:.0e}"
    text = number or ("&middot;" if outcome == "unsupported" else html.escape(outcome))
    return f'<td class="cm" style="{_swatch(outcome)}" title="{html.escape(outcome)}">{text}</td>'


def _swatch(outcome: str) -> str:
    """Background of an outcome, with text that stays readable on it."""
    colour = OUTCOME_COLOURS.get(outcome, "#ffffff")
    dark = outcome in ("mismatch", "error", "crashed")
    return f"background:{colour};color:{'#fff' if dark else '#222'}"


def _column_order(column: str) -> tuple:
    op, _, method = column.partition(":")
    return (ALL_OPS.index(op) if op in ALL_OPS else len(ALL_OPS), method)


def correctness_html(frame: pd.DataFrame) -> str:
    """One table per implementation: problem x operation (method), coloured by
    the worst outcome over sizes, dtypes and points, the number the largest
    relative error in units of the dtype's eps. Operations the implementation
    supports for no problem are left out (the summary counts them)."""
    data = frame[frame["suite"] == "check"].copy()
    if data.empty:
        return ""
    data["eps_units"] = data["max_rel_err"] / data["dtype"].map(EPS).fillna(EPS["float64"])
    data["column"] = data["op"].where(data["method"].isna(),
                                      data["op"] + ":" + data["method"].fillna("").astype(str))
    key = "".join(f'<span class="cm" style="{_swatch(o)}">{html.escape(o)}</span> '
                  for o in OUTCOME_COLOURS)
    parts = [f'<p class="legend">{key}</p>']
    for impl in sorted(data["impl"].unique()):
        cells = data[data["impl"] == impl].groupby(["problem", "column"])
        outcome = cells["outcome"].agg(_worst).unstack()
        offered = [c for c in outcome.columns
                   if outcome[c].dropna().ne("unsupported").any()]  # not unsupported everywhere
        outcome = outcome[sorted(offered, key=_column_order)]
        if outcome.empty:
            parts.append(f"<h3>{html.escape(str(impl))}</h3><p class=\"empty\">Every cell "
                         "unsupported.</p>")
            continue
        errors = cells["eps_units"].max().unstack().reindex_like(outcome)  # NaN where none
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in outcome.columns)
        body = "".join(
            f"<tr><th>{html.escape(str(problem))}</th>"
            + "".join(_matrix_cell(outcome.at[problem, c], errors.at[problem, c])
                      for c in outcome.columns) + "</tr>"
            for problem in outcome.index)
        parts.append(f'<h3>{html.escape(str(impl))}</h3><div class="scroll"><table class="matrix">'
                     f"<thead><tr><th>problem</th>{head}</tr></thead><tbody>{body}</tbody>"
                     "</table></div>")
    return "".join(parts)


# --- sortable, filterable tables ---

SORTABLE_SCRIPT = """
<script>
document.querySelectorAll('table.sortable').forEach(function (table) {
  var rows = Array.from(table.tBodies[0].rows);
  table.querySelectorAll('th').forEach(function (th, column) {
    th.addEventListener('click', function () {
      var up = th.dataset.order !== 'up';
      th.dataset.order = up ? 'up' : 'down';
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.v, y = b.cells[column].dataset.v;
        var nx = parseFloat(x), ny = parseFloat(y), r;
        if (!isNaN(nx) && !isNaN(ny)) { r = nx - ny; } else { r = String(x).localeCompare(String(y)); }
        return up ? r : -r;
      });
      rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
    });
  });
  var filter = document.getElementById(table.id + '-filter');
  if (filter) {
    filter.addEventListener('input', function () {
      var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
      rows.forEach(function (row) {
        var text = row.textContent.toLowerCase();
        row.style.display = words.every(function (w) { return text.includes(w); }) ? '' : 'none';
      });
    });
  }
});
</script>
"""


def _display(value, column: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float):
        if column.endswith("_s"):
            return format_seconds(value)
        return f"{value:.3g}"
    return str(value)


def sortable_html(frame: pd.DataFrame, id: str) -> str:
    """A table whose headers sort (numbers by value) and whose rows filter by
    the words typed above it; plain HTML and the inline script above."""
    head = "".join(f'<th title="click to sort">{html.escape(str(c))}</th>' for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, values):
            missing = value is None or (isinstance(value, float) and np.isnan(value))
            key = "" if missing else str(value)
            css = (f' class="outcome-{html.escape(key.replace(" ", "-"))}"'
                   if column == "checked" else "")
            cells.append(f'<td data-v="{html.escape(key)}"{css}>'
                         f"{html.escape(_display(value, str(column)))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<p><input id="{id}-filter" type="search" placeholder="filter: words all rows '
            f'must contain" size="40"> {len(rows)} rows; click a header to sort.</p>'
            f'<div class="scroll"><table class="sortable" id="{id}"><thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>")


TIMING_COLUMNS = ["problem", "impl", "op", "method", "size", "dtype", "device", "checked",
                  "max_rel_err", "time_median_s", "time_iqr_s", "ratio_to_primal", "ratio_q1",
                  "ratio_q3", "compile_s", "rounds", "threads", "cores", "least_cores",
                  "timing_warning"]


def timing_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every timed cell with its check verdict, spread, compile time and warning."""
    timed = with_check_verdict(bench_ok(frame), frame)
    machine = ["machine"] if "machine" in timed and timed["machine"].nunique() > 1 else []
    return timed.reindex(columns=TIMING_COLUMNS + machine).sort_values(
        ["problem", "op", "size", "time_median_s"])
