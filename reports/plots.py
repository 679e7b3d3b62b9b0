"""The report's plots: each function takes the results table and returns a
matplotlib Figure, or None when the table holds nothing for it."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from adjointbench.suites.results import OUTCOMES  # noqa: E402
from adjointbench.suites.tolerance import EPS  # noqa: E402

OUTCOME_COLOURS = {"ok": "#4caf50", "mismatch": "#e53935", "unsupported": "#d9d9d9",
                   "error": "#8e24aa", "timeout": "#fb8c00", "crashed": "#000000",
                   "ill_conditioned": "#fdd835"}
# the worst outcome of several cells is shown: failures first, then the rest
SEVERITY = ["crashed", "timeout", "error", "mismatch", "ill_conditioned", "ok", "unsupported"]
TIMED_OPS = ("primal", "jvp", "vjp", "jacfwd", "jacrev")


def _colours(names) -> dict[str, str]:
    palette = plt.get_cmap("tab10").colors
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(names))}


def _grid(count: int, width: float = 3.6, height: float = 2.8):
    columns = min(4, count)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _bench(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[(frame["suite"] == "bench") & (frame["outcome"] == "ok")]
    return ok.dropna(subset=["time_median_s"])


def _lines(ax, data: pd.DataFrame, y: str, colours: dict, x: str = "size") -> None:
    for impl, rows in data.groupby("impl"):
        rows = rows.sort_values(x)
        ax.plot(rows[x], rows[y], marker="o", ms=3, label=impl, color=colours[impl])


def _legend(fig: Figure, colours: dict) -> None:
    handles = [plt.Line2D([], [], color=c, marker="o", ms=4, label=n) for n, c in colours.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4),
               frameon=False)


def time_against_size(frame: pd.DataFrame, op: str) -> Figure | None:
    """Median time of ``op`` against size, log-log, one panel per problem."""
    data = _bench(frame)
    data = data[(data["op"] == op) & (data["dtype"] == "float64") & (data["device"] == "cpu")]
    if data.empty:
        return None
    colours = _colours(data["impl"].unique())
    problems = sorted(data["problem"].unique())
    fig, axes = _grid(len(problems))
    for ax, problem in zip(axes, problems):
        _lines(ax, data[data["problem"] == problem], "time_median_s", colours)
        ax.set(xscale="log", yscale="log", title=problem, xlabel="size", ylabel="seconds")
    fig.suptitle(f"{op}: median time per call against size (float64, CPU)")
    _legend(fig, colours)
    return fig


def ratio_to_primal(frame: pd.DataFrame) -> Figure | None:
    """Each operation's cost in primals, at each problem's largest timed size."""
    data = _bench(frame)
    data = data[(data["op"] != "primal") & (data["dtype"] == "float64")].dropna(
        subset=["ratio_to_primal"])
    if data.empty:
        return None
    largest = data.groupby("problem")["size"].transform("max")
    data = data[data["size"] == largest]
    ops = [op for op in ("jvp", "vjp", "batched_jacobian", "jacfwd", "jacrev")
           if op in set(data["op"])]
    fig, axes = _grid(len(ops), width=5.2, height=0.3 * data["problem"].nunique() + 1.6)
    for ax, op in zip(axes, ops):
        subset = data[data["op"] == op].assign(flagged=lambda d: d["timing_warning"].notna())
        table = subset.pivot_table(index="problem", columns="impl", values="ratio_to_primal",
                                   aggfunc="median")
        flagged = subset.pivot_table(index="problem", columns="impl", values="flagged",
                                     aggfunc="any").reindex_like(table).fillna(False)
        labels = np.vectorize(lambda r, f: f"{r:.3g}{'!' if f else ''}" if np.isfinite(r)
                              else "", otypes=[object])(table.to_numpy(dtype=float),
                                                        flagged.to_numpy(dtype=bool))
        _heatmap(ax, np.log10(table.to_numpy(dtype=float)), table, fmt="{:.3g}", cmap="RdYlGn_r",
                 annotate=labels)
        ax.set_title(f"{op} / primal")
    fig.suptitle("Cost relative to the primal at the largest timed size (log colour scale)")
    return fig


def _heatmap(ax, values: np.ndarray, table: pd.DataFrame, fmt: str, cmap, annotate) -> None:
    ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=7)
    for (i, j), value in np.ndenumerate(annotate):
        if isinstance(value, str) or np.isfinite(value):
            ax.text(j, i, value if isinstance(value, str) else fmt.format(value),
                    ha="center", va="center", fontsize=6)


def _worst(outcomes: pd.Series) -> str:
    return min(outcomes, key=SEVERITY.index)


def _in_eps(group: pd.DataFrame) -> float:
    errors = group["max_rel_err"] / group["dtype"].map(EPS).fillna(EPS["float64"])
    return float(errors.max()) if errors.notna().any() else float("nan")


def correctness_matrix(frame: pd.DataFrame) -> Figure | None:
    """Problem x operation per implementation, coloured by the worst outcome
    over sizes and dtypes, annotated with the largest error in units of eps."""
    data = frame[frame["suite"] == "check"].copy()
    if data.empty:
        return None
    data["column"] = data["op"].where(data["method"].isna(),
                                      data["op"] + ":" + data["method"].fillna("").astype(str))
    impls = sorted(data["impl"].unique())
    fig, axes = _grid(len(impls), width=4.4, height=0.22 * data["problem"].nunique() + 1.8)
    cmap = ListedColormap([OUTCOME_COLOURS[o] for o in OUTCOMES])
    for ax, impl in zip(axes, impls):
        cells = data[data["impl"] == impl].groupby(["problem", "column"])
        outcome = cells["outcome"].agg(_worst).unstack()
        errors = cells.apply(_in_eps, include_groups=False).unstack().reindex_like(outcome)
        codes = outcome.apply(lambda col: col.map(lambda o: OUTCOMES.index(o)
                                                  if isinstance(o, str) else np.nan))
        ax.imshow(np.ma.masked_invalid(codes.to_numpy(dtype=float)), cmap=cmap, vmin=-0.5,
                  vmax=len(OUTCOMES) - 0.5, aspect="auto")
        labels = np.vectorize(_eps_label)(errors.to_numpy(dtype=float), outcome.to_numpy())
        _heatmap(ax, codes.to_numpy(dtype=float) * np.nan, codes, "", None, labels)
        ax.set_title(impl)
    handles = [plt.Rectangle((0, 0), 1, 1, color=OUTCOME_COLOURS[o], label=o) for o in OUTCOMES]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(OUTCOMES), frameon=False)
    fig.suptitle("Correctness: worst outcome over sizes and dtypes; "
                 "number = largest relative error in units of the dtype's eps")
    return fig


def _eps_label(error: float, outcome) -> str:
    if not isinstance(outcome, str) or outcome == "unsupported" or not np.isfinite(error):
        return ""
    return f"{error:.0f}" if error < 1e3 else f"{error:.0e}"


def adjoint_methods(frame: pd.DataFrame) -> Figure | None:
    """Each gradient method's relative error and time against P."""
    data = frame[(frame["op"] == "gradient") & frame["outcome"].isin(["ok", "mismatch"])]
    data = data.dropna(subset=["max_rel_err", "time_median_s"])
    scalable = [p for p, rows in data.groupby("problem") if rows["size"].nunique() > 1]
    if not scalable:
        return None
    data = data.assign(label=data["impl"] + " " + data["method"])
    colours = _colours(data["label"].unique())
    fig, axes = plt.subplots(2, len(scalable), figsize=(5 * len(scalable), 7), squeeze=False,
                             layout="constrained")
    for column, problem in enumerate(scalable):
        rows = data[data["problem"] == problem].assign(
            max_rel_err=lambda d: d["max_rel_err"].clip(lower=1e-17))
        for what, ax in zip(("max_rel_err", "time_median_s"), axes[:, column]):
            for label, line in rows.groupby("label"):
                line = line.sort_values("size")
                ax.plot(line["size"], line[what], marker="o", ms=3, color=colours[label])
            ax.set(xscale="log", yscale="log", xlabel="P (parameters)", title=problem,
                   ylabel="relative error" if what == "max_rel_err" else "seconds per gradient")
    _legend(fig, colours)
    fig.suptitle("Adjoint-sensitivity methods: accuracy and cost against P")
    return fig


def batched_throughput(frame: pd.DataFrame) -> Figure | None:
    """Samples per second of batched Jacobians against the batch size B."""
    data = _bench(frame)
    data = data[data["op"] == "batched_jacobian"]
    if data.empty:
        return None
    data = data.assign(samples_per_s=data["size"] / data["time_median_s"])
    colours = _colours(data["impl"].unique())
    problems = sorted(data["problem"].unique())
    fig, axes = _grid(len(problems))
    for ax, problem in zip(axes, problems):
        _lines(ax, data[data["problem"] == problem], "samples_per_s", colours)
        ax.set(xscale="log", yscale="log", title=problem, xlabel="batch size B",
               ylabel="samples / s")
    fig.suptitle("Batched Jacobians: throughput against batch size")
    _legend(fig, colours)
    return fig


def second_order_costs(frame: pd.DataFrame) -> Figure | None:
    """Cost of a Hessian-vector product in primals against size, one line per
    implementation and nesting, one panel per problem (paired ratios)."""
    data = _bench(frame)
    data = data[(data["op"] == "hvp") & data["method"].notna()].dropna(
        subset=["ratio_to_primal"])
    if data.empty:
        return None
    data = data.assign(series=data["impl"] + " " + data["method"].str.replace("_", "-"))
    colours = _colours(data["series"].unique())
    problems = sorted(data["problem"].unique())
    fig, axes = _grid(len(problems))
    for ax, problem in zip(axes, problems):
        for series, rows in data[data["problem"] == problem].groupby("series"):
            rows = rows.sort_values("size")
            ax.errorbar(rows["size"], rows["ratio_to_primal"],
                        yerr=[rows["ratio_to_primal"] - rows["ratio_q1"],
                              rows["ratio_q3"] - rows["ratio_to_primal"]],
                        marker="o", ms=3, capsize=2, color=colours[series],
                        linestyle="-" if len(rows) > 1 else "none")
        ax.set(xscale="log", yscale="log", title=problem, xlabel="size",
               ylabel="hvp time / primal time")
    fig.suptitle("Second order: Hessian-vector product cost by nesting (median and quartiles "
                 "of paired ratios)")
    _legend(fig, colours)
    return fig


def recorded_curves(frame: pd.DataFrame) -> Figure | None:
    """Every check cell that kept its values (problems declared with
    ``record_values``, e.g. gd_trajectory, whose Jacobian is the unrolling
    curve dx_t/dtheta), drawn against the oracle's reference."""
    curves = frame[(frame["suite"] == "check") & (frame["op"] != "gradient")
                   & frame["value"].notna() & frame["reference"].notna()]
    curves = curves[curves["value"].map(lambda v: np.size(v) > 1)]  # curves, not single numbers
    if curves.empty:
        return None
    keys = sorted(curves.groupby(["problem", "op"]).groups)
    colours = _colours(curves["impl"].unique())
    fig, axes = _grid(len(keys))
    for ax, (problem, op) in zip(axes, keys):
        rows = curves[(curves["problem"] == problem) & (curves["op"] == op)]
        for index, (_, row) in enumerate(rows.drop_duplicates("impl").iterrows()):
            # each record keeps its worst input point: its own reference goes under it
            ax.plot(np.ravel(np.asarray(row["reference"], dtype=float)), color="black", lw=4,
                    alpha=0.25, label="oracle" if index == 0 else None)
            ax.plot(np.ravel(np.asarray(row["value"], dtype=float)), lw=1,
                    color=colours[row["impl"]])
        ax.set(xlabel="output index (iteration t)", ylabel=f"{op} value", title=f"{problem} {op}")
        ax.legend(fontsize=8, loc="best")
    _legend(fig, colours)
    fig.suptitle("Recorded curves against the oracle (gd_trajectory's Jacobian is the "
                 "unrolling curve dx_t/dtheta)")
    return fig
