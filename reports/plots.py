"""The report's plots: each function takes the results table and returns a
matplotlib Figure, or None when the table holds nothing for it."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


OUTCOME_COLOURS = {"ok": "#4caf50", "mismatch": "#e53935", "unsupported": "#d9d9d9",
                   "error": "#8e24aa", "timeout": "#fb8c00", "crashed": "#000000",
                   "ill_conditioned": "#fdd835"}
# the worst outcome of several cells is shown: failures first, then the rest
SEVERITY = ["crashed", "timeout", "error", "mismatch", "ill_conditioned", "ok", "unsupported"]
TIMED_OPS = ("primal", "jvp", "vjp", "jacfwd", "jacrev")


# One colour per implementation and one marker per method in every figure:
# the built-in implementations have fixed places, any other name a place by a
# stable hash of its name (so adding an implementation moves no other).
PALETTE = plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2]
BUILT_IN = ("numpy", "naive", "jax", "torch", "jax_implicit", "torch_implicit", "jax_loop",
            "torch_loop", "example")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
METHOD_ORDER = ("forward_over_reverse", "reverse_over_forward", "reverse_over_reverse",
                "forward_over_forward", "rule", "materialised", "fd_forward", "fd_central",
                "forward_sensitivity", "adjoint", "unrolled", "implicit",
                "second_order_adjoint", "fd_gradient")


def _stable_index(name: str, known: tuple, count: int) -> int:
    import zlib

    if name in known:
        return known.index(name) % count
    spare = count - len(known)  # unknown names hash into the places the known ones leave
    return len(known) + zlib.crc32(name.encode()) % spare if spare > 0 else \
        zlib.crc32(name.encode()) % count


def implementation_colour(impl: str):
    return PALETTE[_stable_index(str(impl), BUILT_IN, len(PALETTE))]


def method_marker(method) -> str:
    if not isinstance(method, str) or not method:
        return "o"
    return MARKERS[_stable_index(method, METHOD_ORDER, len(MARKERS))]


def _colours(names) -> dict[str, object]:
    """Each series (an implementation, or "impl method") in its implementation's colour."""
    return {name: implementation_colour(str(name).split(" ")[0]) for name in sorted(names)}


def _markers(names) -> dict[str, str]:
    """Each "impl method" series with its method's marker."""
    return {name: method_marker(str(name).split(" ")[1] if " " in str(name) else None)
            for name in sorted(names)}


def tidy_log_axes(fig: Figure) -> Figure:
    """Ticks and labels on log axes at their decades only: minor labels (2x10^0,
    3x10^0, ...) collide at page width, and the minor ticks, too small to see
    there, were half of the report's time (matplotlib makes each tick anew
    at every layout pass: the three time-against-size figures of a main job,
    20 panels each, took 13.5 s with them and 5.7 s without)."""
    from matplotlib.ticker import NullLocator

    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_minor_locator(NullLocator())
    return fig


MIN_FIGURE_WIDTH = 7.5  # inches: a one-panel figure's title is cut at 3.6


def _grid(count: int, width: float = 3.6, height: float = 2.8):
    columns = min(4, count)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns,
                             figsize=(max(width * columns, MIN_FIGURE_WIDTH), height * rows),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def bench_ok(frame: pd.DataFrame) -> pd.DataFrame:
    """The bench cells that were timed."""
    ok = frame[(frame["suite"] == "bench") & (frame["outcome"] == "ok")]
    return ok.dropna(subset=["time_median_s"])


def _series(ax, rows: pd.DataFrame, x: str, y: str, low, high, colour, marker="o",
            dashed: bool = False) -> None:
    """Median with its spread as error bars; joined by a line only from three
    sizes on (two points do not make a trend)."""
    rows = rows.sort_values(x)
    yerr = None
    if low is not None and high is not None:
        yerr = [(rows[y] - low(rows)).clip(lower=0), (high(rows) - rows[y]).clip(lower=0)]
    style = ("--" if dashed else "-") if len(rows) >= 3 else "none"
    ax.errorbar(rows[x], rows[y], yerr=yerr, marker=marker, ms=4, capsize=2, color=colour,
                linestyle=style, mfc="white" if dashed else colour)


# time +- half its IQR: the bars of every per-call time
TIME_SPREAD = (lambda r: r["time_median_s"] - r["time_iqr_s"].fillna(0) / 2,
               lambda r: r["time_median_s"] + r["time_iqr_s"].fillna(0) / 2)


def _lines(ax, data: pd.DataFrame, y: str, colours: dict, x: str = "size",
           spread=(None, None)) -> None:
    """One series per implementation and dtype (float32 dashed, open markers)."""
    for (impl, dtype), rows in data.groupby(["impl", "dtype"]):
        _series(ax, rows, x, y, *spread, colours[impl], dashed=dtype == "float32")


def _legend(fig: Figure, colours: dict, markers: dict | None = None,
            dtypes: bool = False) -> None:
    """Below the panels, inside the figure (constrained layout keeps it whole)."""
    markers = markers or {}
    handles = [plt.Line2D([], [], color=c, marker=markers.get(n, "o"), ms=5, label=n)
               for n, c in colours.items()]
    if dtypes:
        handles += [plt.Line2D([], [], color="grey", marker="o", ms=5, label="float64"),
                    plt.Line2D([], [], color="grey", marker="o", ms=5, mfc="white",
                               linestyle="--", label="float32")]
    width = fig.get_size_inches()[0]  # as many columns as fit, about 2.4 inches each
    fig.legend(handles=handles, loc="outside lower center", frameon=False,
               ncols=max(1, min(len(handles), 4, int(width / 2.4))))


def time_against_size(frame: pd.DataFrame, op: str) -> Figure | None:
    """Median time of ``op`` against size, log-log, one panel per problem."""
    data = bench_ok(frame)
    data = data[(data["op"] == op) & (data["device"] == "cpu")]
    if data.empty:
        return None
    colours = _colours(data["impl"].unique())
    problems = sorted(data["problem"].unique())
    fig, axes = _grid(len(problems))
    for ax, problem in zip(axes, problems):
        _lines(ax, data[data["problem"] == problem], "time_median_s", colours,
               spread=TIME_SPREAD)
        ax.set(xscale="log", yscale="log", title=problem, xlabel="size", ylabel="seconds")
    fig.suptitle(f"{op}: median time per call against size, bars at the quartiles (CPU)")
    _legend(fig, colours, dtypes=data["dtype"].nunique() > 1)
    return fig


def ratio_to_primal(frame: pd.DataFrame) -> Figure | None:
    """Each operation's cost in primals, at each problem's largest timed size."""
    data = bench_ok(frame)
    data = data[(data["op"] != "primal") & (data["dtype"] == "float64")].dropna(
        subset=["ratio_to_primal"])
    if data.empty:
        return None
    largest = data.groupby("problem")["size"].transform("max")
    data = data[data["size"] == largest]
    ops = [op for op in ("jvp", "vjp", "batched_jacobian", "jacfwd", "jacrev")
           if op in set(data["op"])]
    fig, axes = _grid(len(ops), width=max(5.2, 10.0 / len(ops)),
                      height=0.3 * data["problem"].nunique() + 1.6)
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
                    ha="center", va="center", fontsize=8)


def adjoint_methods(frame: pd.DataFrame) -> Figure | None:
    """Each gradient method's relative error and time against P."""
    data = frame[(frame["op"] == "gradient") & frame["outcome"].isin(["ok", "mismatch"])]
    data = data.dropna(subset=["max_rel_err", "time_median_s"])
    scalable = [p for p, rows in data.groupby("problem") if rows["size"].nunique() > 1]
    if not scalable:
        return None
    data = data.assign(label=data["impl"] + " " + data["method"])
    colours, markers = _colours(data["label"].unique()), _markers(data["label"].unique())
    fig, axes = plt.subplots(2, len(scalable), figsize=(5 * len(scalable) + 1, 7.5),
                             squeeze=False, layout="constrained")
    for column, problem in enumerate(scalable):
        rows = data[data["problem"] == problem].assign(
            max_rel_err=lambda d: d["max_rel_err"].clip(lower=1e-17))
        for what, ax in zip(("max_rel_err", "time_median_s"), axes[:, column]):
            for label, line in rows.groupby("label"):
                bars = TIME_SPREAD if what == "time_median_s" else (None, None)
                _series(ax, line, "size", what, *bars, colours[label], markers[label])
            ax.set(xscale="log", yscale="log", xlabel="P (parameters)", title=problem,
                   ylabel="relative error" if what == "max_rel_err" else "seconds per gradient")
    _legend(fig, colours, markers)
    fig.suptitle("Adjoint-sensitivity methods: accuracy and cost against P")
    return fig


def batched_throughput(frame: pd.DataFrame) -> Figure | None:
    """Samples per second of batched Jacobians against the batch size B."""
    data = bench_ok(frame)
    data = data[data["op"] == "batched_jacobian"]
    if data.empty:
        return None
    data = data.assign(samples_per_s=data["size"] / data["time_median_s"])
    colours = _colours(data["impl"].unique())
    problems = sorted(data["problem"].unique())
    fig, axes = _grid(len(problems))
    half = lambda r: r["time_iqr_s"].fillna(0) / 2
    spread = (lambda r: r["size"] / (r["time_median_s"] + half(r)),
              lambda r: r["size"] / (r["time_median_s"] - half(r)).clip(
                  lower=r["time_median_s"] * 1e-3))
    for ax, problem in zip(axes, problems):
        _lines(ax, data[data["problem"] == problem], "samples_per_s", colours, spread=spread)
        ax.set(xscale="log", yscale="log", title=problem, xlabel="batch size B",
               ylabel="samples / s")
    fig.suptitle("Batched Jacobians: throughput against batch size")
    _legend(fig, colours)
    return fig


def second_order_costs(frame: pd.DataFrame) -> Figure | None:
    """Cost of a Hessian-vector product in primals against size, one line per
    implementation and nesting, one panel per problem (paired ratios)."""
    data = bench_ok(frame)
    data = data[(data["op"] == "hvp") & data["method"].notna()].dropna(
        subset=["ratio_to_primal"])
    if data.empty:
        return None
    data = data.assign(series=data["impl"] + " " + data["method"])
    colours, markers = _colours(data["series"].unique()), _markers(data["series"].unique())
    problems = sorted(data["problem"].unique())
    fig, axes = _grid(len(problems))
    for ax, problem in zip(axes, problems):
        for series, rows in data[data["problem"] == problem].groupby("series"):
            _series(ax, rows, "size", "ratio_to_primal", lambda r: r["ratio_q1"],
                    lambda r: r["ratio_q3"], colours[series], markers[series])
        ax.set(xscale="log", yscale="log", title=problem, xlabel="size",
               ylabel="hvp time / primal time")
    fig.suptitle("Second order: Hessian-vector product cost by nesting (median and quartiles "
                 "of paired ratios)")
    _legend(fig, colours, markers)
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
