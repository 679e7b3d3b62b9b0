"""The report: a self-contained ``index.html`` (plots embedded as data URIs,
no network), a ``summary.md`` and every plot as its own PNG.

Every section is always present; one with no data says so. Every name that
comes from results is escaped (HTML in the page, Markdown in the summary).
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd

from adjointbench.reports import plots, tables
from adjointbench.reports.load import Loaded
from adjointbench.suites.results import FAILURES, OUTCOMES


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    caption: str
    plot: Callable[[pd.DataFrame], object] | None = None
    filled_by: str = ""  # the command whose results draw the plot, told when it has no data


SECTIONS = (
    Section("time-primal", "Primal: time against size", "Median time per call, log-log.",
            lambda f: plots.time_against_size(f, "primal"), "adjointbench bench"),
    Section("time-jvp", "JVP: time against size", "Median time per call, log-log.",
            lambda f: plots.time_against_size(f, "jvp"), "adjointbench bench --op jvp"),
    Section("time-vjp", "VJP: time against size", "Median time per call, log-log.",
            lambda f: plots.time_against_size(f, "vjp"), "adjointbench bench --op vjp"),
    Section("ratio", "Cost relative to the primal",
            "Median of paired ratios: samples of each operation and of its primal alternate "
            "in one process on the same inputs. '!' marks a flagged cell (see Timing "
            "warnings).", plots.ratio_to_primal, "adjointbench bench"),
    Section("second-order", "Second order: cost of each nesting",
            "Hessian-vector product time over the primal's (paired ratios, bars at the "
            "quartiles) against size, per implementation and nesting: forward-over-reverse "
            "is the cheap one; forward-over-forward takes one JVP of a JVP per input entry.",
            plots.second_order_costs, "adjointbench bench --op hvp"),
    Section("adjoint", "Adjoint-sensitivity methods",
            "Relative error against the oracle and time per gradient, against the number "
            "of parameters P.", plots.adjoint_methods,
            "adjointbench check --op gradient"),
    Section("batched", "Batched-Jacobian throughput",
            "Samples per second against batch size; *_loop is a per-sample loop, the "
            "baseline vmap is measured against.", plots.batched_throughput,
            "adjointbench bench --op batched_jacobian"),
    Section("unrolling", "The unrolling curve",
            "dx_t/dtheta through 1000 steps of gradient descent (the Jacobian of gd_trajectory) "
            "for each implementation, over the oracle's reference; any other problem that "
            "records its values is drawn here too.", plots.recorded_curves,
            "adjointbench check --problem gd_trajectory"),
)

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} section{margin:2rem 0;border-top:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4} img{max-width:100%;height:auto} .empty{color:#777;font-style:italic}
.warning{color:#a15c00} nav a{margin-right:.8rem} code{background:#f4f4f4;padding:0 .2rem}
.outcome-ok{color:#2e7d32} .outcome-mismatch,.outcome-error,.outcome-crashed,
.outcome-timeout{color:#c62828;font-weight:bold}
.scroll{overflow-x:auto;max-width:100%} .scroll table{font-size:.78rem}
table.matrix th{font-weight:normal;white-space:nowrap} table.matrix thead th{writing-mode:
vertical-rl;transform:rotate(180deg);max-height:16rem} td.cm{text-align:center;min-width:1.6rem}
span.cm{padding:0 .4rem;margin-right:.2rem} table.sortable th{cursor:pointer}
table.sortable td[data-v]{white-space:nowrap}
"""


def escape_markdown(text) -> str:
    return re.sub(r"([\\`*_{}\[\]<>()#+!|])", r"\\\1", str(text))


NAME_COLUMNS = ("problem", "impl", "op", "method", "dtype", "device", "suite")


def _mathtext_escaped(frame: pd.DataFrame) -> pd.DataFrame:
    """The names matplotlib draws, with ``$`` escaped: an implementation named
    ``$\\frac{$`` is drawn as written instead of failing as mathtext."""
    escaped = frame.copy()
    for column in NAME_COLUMNS:
        if column in escaped:
            escaped[column] = escaped[column].map(
                lambda v: v.replace("$", r"\$") if isinstance(v, str) else v)
    return escaped


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column, value in row.items():
            text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else value
            css = f' class="outcome-{html.escape(str(text))}"' if column == "outcome" else ""
            cells.append(f"<td{css}>{html.escape(str(text))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_none_\n"
    lines = ["| " + " | ".join(escape_markdown(c) for c in frame.columns) + " |",
             "|" + "---|" * len(frame.columns)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(escape_markdown("" if pd.isna(v) else v)
                                        if not isinstance(v, (list, dict)) else escape_markdown(v)
                                        for v in row) + " |")
    return "\n".join(lines) + "\n"


def outcome_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells per suite and implementation, by outcome."""
    if frame.empty:
        return pd.DataFrame(columns=["suite", "impl", *OUTCOMES, "total"])
    counts = frame.groupby(["suite", "impl"])["outcome"].value_counts().unstack(fill_value=0)
    counts = counts.reindex(columns=list(OUTCOMES), fill_value=0)
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


def several_machines(frame: pd.DataFrame) -> bool:
    return "machine" in frame and frame["machine"].nunique() > 1


def failures(frame: pd.DataFrame) -> pd.DataFrame:
    columns = ["suite", "problem", "impl", "op", "method", "size", "dtype", "device",
               *(["machine"] if several_machines(frame) else []), "outcome", "message"]
    failed = frame[frame["outcome"].isin(FAILURES)]
    return failed.reindex(columns=columns).fillna("")


def _environment_rows(environment: dict) -> pd.DataFrame:
    if not environment:
        return pd.DataFrame(columns=["setting", "value"])
    threads = environment.get("threads", {})
    rows = [(k, environment.get(k)) for k in ("time", "commit", "python", "platform", "cpu",
                                              "cpu_count")]
    rows.append(("gpus", ", ".join(environment.get("gpus") or []) or "none"))
    rows += [(f"version {k}", v) for k, v in environment.get("versions", {}).items()]
    rows.append(("threads requested", threads.get("requested") or "library defaults"))
    if threads.get("cpus_allowed"):
        rows.append(("CPUs the process may run on", threads["cpus_allowed"]))
    if "of" in threads:
        rows.append(("thread settings of", threads["of"]))
    rows += [(f"threads {p.get('api')} ({p.get('library')})", p.get("threads"))
             for p in threads.get("pools", [])]
    if "torch" in threads:
        rows.append(("threads torch", threads["torch"]))
    rows += [(f"env {k}", v) for k, v in threads.get("environment", {}).items()]
    return pd.DataFrame(rows, columns=["setting", "value"])


def machines_table(frame: pd.DataFrame, environment: dict) -> pd.DataFrame:
    """One row per machine of merged or cluster results: what it is and what it ran."""
    described = environment.get("machines") or {}
    rows = []
    for machine, cells in frame.groupby("machine"):
        env = described.get(machine, environment if machine == environment.get("machine") else {})
        versions = env.get("versions", {})
        rows.append({"machine": machine, "cpu": env.get("cpu"), "cores": env.get("cpu_count"),
                     "gpus": ", ".join(env.get("gpus") or []) or "none",
                     "versions": ", ".join(f"{k} {versions[k]}" for k in ("adjointbench", "jax",
                                                                          "torch") if k in versions),
                     "cells": len(cells), "failed": int(cells["outcome"].isin(FAILURES).sum())})
    return pd.DataFrame(rows)


def timing_warnings(frame: pd.DataFrame) -> pd.DataFrame:
    """Bench cells whose figures are suspect, with the reason (suites/bench.py)."""
    columns = ["problem", "impl", "op", "size", "dtype", "device", "ratio", "timing_warning"]
    if "timing_warning" not in frame:
        return pd.DataFrame(columns=columns)
    flagged = frame[frame["timing_warning"].notna()].copy()
    flagged["ratio"] = [f"{m:.3g} [{a:.3g}, {b:.3g}]" for m, a, b in zip(
        flagged["ratio_to_primal"], flagged["ratio_q1"], flagged["ratio_q3"])]
    return flagged.reindex(columns=columns)


def _bench_table(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    columns = ["group", "impl", "time_median_s", "time_iqr_s", "ratio_to_primal", "ratio_q1",
               "ratio_q3", "rounds"]
    table = frame.reindex(columns=columns).sort_values(["group", "time_median_s"])
    return table.assign(time_median_s=table["time_median_s"].map("{:.3e}".format),
                        time_iqr_s=table["time_iqr_s"].map("{:.1e}".format),
                        **{c: table[c].map("{:.2f}".format)
                           for c in ("ratio_to_primal", "ratio_q1", "ratio_q3")})


class Report:
    """Collects sections as HTML and Markdown, then writes both."""

    def __init__(self, out: Path, title: str):
        self.out, self.title = Path(out), title
        self.html: list[str] = []
        self.markdown: list[str] = [f"# {title}\n"]
        self.nav: list[tuple[str, str]] = []
        (self.out / "plots").mkdir(parents=True, exist_ok=True)

    def section(self, id: str, title: str, body_html: str, body_markdown: str) -> None:
        self.nav.append((id, title))
        self.html.append(f'<section id="{id}"><h2>{html.escape(title)}</h2>{body_html}</section>')
        self.markdown.append(f"## {title}\n\n{body_markdown}\n")

    def table(self, id: str, title: str, frame: pd.DataFrame, empty: str) -> None:
        if frame.empty:
            self.section(id, title, f'<p class="empty">{html.escape(empty)}</p>', f"_{empty}_\n")
        else:
            self.section(id, title, _html_table(frame), _markdown_table(frame))

    def no_data(self, section: Section) -> None:
        """An empty plot's section: says so, and which command's results draw it."""
        empty = "No data for this plot in these results"
        command = section.filled_by
        self.section(section.id, section.title,
                     f'<p class="empty">{empty}' + (f": <code>{html.escape(command)}</code> "
                                                    "records it" if command else "") + ".</p>",
                     f"_{empty}_" + (f": `{command}` records it" if command else "") + ".\n")

    def plot(self, section: Section, frame: pd.DataFrame) -> None:
        try:
            fig = section.plot(_mathtext_escaped(frame))  # names are text, never TeX
            png = None if fig is None else _png(plots.tidy_log_axes(fig))
        except Exception as e:  # a plot that fails is reported, the report goes on
            message = f"This plot failed: {type(e).__name__}: {e}"
            self.section(section.id, section.title, f'<p class="warning">{html.escape(message)}'
                         "</p>", f"_{escape_markdown(message)}_\n")
            return
        if png is None:
            self.no_data(section)
            return
        name = f"plots/{section.id}.png"
        (self.out / name).write_bytes(png)
        data = base64.b64encode(png).decode("ascii")
        self.section(section.id, section.title,
                     f"<p>{html.escape(section.caption)}</p>"
                     f'<img src="data:image/png;base64,{data}" alt="{html.escape(section.title)}">',
                     f"{section.caption}\n\n![{section.title}]({name})\n")

    def html_section(self, id: str, title: str, body_html: str, body_markdown: str,
                     empty: str) -> None:
        if not body_html:
            self.section(id, title, f'<p class="empty">{html.escape(empty)}</p>', f"_{empty}_\n")
        else:
            self.section(id, title, body_html, body_markdown)

    def write(self, warnings: list[str]) -> Path:
        nav = "".join(f'<a href="#{i}">{html.escape(t)}</a>' for i, t in self.nav)
        notes = "".join(f'<p class="warning">{html.escape(w)}</p>' for w in warnings)
        page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1>{notes}<nav>{nav}</nav>"
                f"{''.join(self.html)}{tables.SORTABLE_SCRIPT}</body></html>\n")
        (self.out / "index.html").write_text(page, encoding="utf-8")
        if warnings:
            self.markdown.insert(1, "".join(f"> {escape_markdown(w)}\n" for w in warnings))
        (self.out / "summary.md").write_text("\n".join(self.markdown), encoding="utf-8")
        return self.out / "index.html"


def comparison_table(comparison) -> pd.DataFrame:
    """One row per changed cell, regressions first (suites/comparison.py)."""
    from adjointbench.suites.comparison import describe_change

    return pd.DataFrame([{"change": c.kind, "cell": c.cell, "what": c.what,
                          "old -> new": describe_change(c)} for c in comparison.changes],
                        columns=["change", "cell", "what", "old -> new"])


def _comparison_section(report: "Report", comparison) -> None:
    from adjointbench.suites.comparison import notes, summary_line

    lines = [f"Against {comparison.old}: {summary_line(comparison)}."]
    lines += [f"Note: {note}." for note in notes(comparison)]
    intro_html = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    intro_md = "".join(f"{escape_markdown(line)}\n\n" for line in lines)
    table = comparison_table(comparison)
    if table.empty:
        report.section("comparison", "Comparison", intro_html + "<p>No cell changed.</p>",
                       intro_md + "No cell changed.\n")
    else:
        report.section("comparison", "Comparison", intro_html + _html_table(table),
                       intro_md + _markdown_table(table))


def _headline(report: Report, frame: pd.DataFrame) -> None:
    """First: which implementation failed what, what each operation costs it,
    and who is fastest."""
    if frame.empty:
        report.html_section("headline", "Headline", "", "", "No cells in these results.")
        return
    impls, fastest = tables.implementation_headline(frame), tables.fastest_headline(frame)
    note = ("Check cells per outcome (failed: mismatch, error, timeout or crash), and the "
            "geometric mean over problems and sizes of each operation's cost in primals "
            "(float64, paired ratios).")
    body_html = f"<p>{html.escape(note)}</p>{_html_table(impls)}"
    body_md = f"{note}\n\n{_markdown_table(impls)}"
    if not fastest.empty:
        lead = ("The fastest implementation per operation at each problem's smallest and "
                "largest timed size (float64, CPU), counted over problems; a rule that "
                "failed its check is not counted, nor a timing that missed work or kept "
                "more cores busy than its threads (see Timing warnings).")
        body_html += f"<p>{html.escape(lead)}</p>{_html_table(fastest)}"
        body_md += f"\n{lead}\n\n{_markdown_table(fastest)}"
    report.section("headline", "Headline", body_html, body_md)


def _correctness(report: Report, frame: pd.DataFrame) -> None:
    caption = ("Worst outcome of each problem and operation (method) over sizes, dtypes and "
               "input points, per implementation; the number is the largest relative error "
               "in units of the dtype's machine epsilon; a dot is unsupported.")
    matrix = tables.correctness_html(frame)
    markdown = _markdown_table(outcome_counts(frame[frame["suite"] == "check"]))
    report.html_section("correctness", "Correctness matrix",
                        matrix and f"<p>{html.escape(caption)}</p>{matrix}", markdown,
                        "No check cells in these results.")


def _judged(frame: pd.DataFrame) -> str:
    """'290 of 411 ok timed cells' judged against the oracle."""
    if frame.empty:
        return "none"
    timed = frame[(frame["suite"] == "bench") & (frame["outcome"] == "ok")]
    return f"{int(timed['max_rel_err'].notna().sum())} of {len(timed)} ok timed cells"


def _timings(report: Report, frame: pd.DataFrame) -> None:
    timed = tables.timing_table(frame) if not frame.empty else pd.DataFrame()
    caption = ("Every timed cell: its rule's check verdict (the worst over sizes and input "
               "points; a failed rule's time is no figure to compare), the relative error of "
               "what its timed calls returned where it was judged against the oracle "
               f"({_judged(frame)}: up to each problem's largest checked size, and beyond "
               "it where the oracle's cache held the reference; blank elsewhere), median "
               "time per call "
               "and its IQR, cost over the primal with its quartiles, compile (first-call) "
               "time, rounds, threads and the cores its timed calls kept busy (more than "
               "its threads: not comparable), the fewer of the operation's and its primal's "
               "(below 0.5: mostly waiting). Type to filter, click a header to sort.")
    report.html_section("timings", "Timings",
                        "" if timed.empty else f"<p>{html.escape(caption)}</p>"
                        + tables.sortable_html(timed, "timings-table"),
                        _markdown_table(timed) if not timed.empty else "",
                        "No timed cells in these results.")


def render(loaded: Loaded, out: Path, title: str = "adjointbench report") -> Path:
    """Write index.html, summary.md and plots/*.png into ``out``; returns the page."""
    frame = loaded.results
    report = Report(out, title)
    _headline(report, frame)
    if loaded.comparison is not None:
        _comparison_section(report, loaded.comparison)
    if several_machines(frame):
        report.table("machines", "Machines", machines_table(frame, loaded.environment), "")
    report.table("summary", "Summary", outcome_counts(frame), "No cells in these results.")
    report.table("failures", "Failures", failures(frame), "No cell failed.")
    _correctness(report, frame)
    for section in SECTIONS:
        report.plot(section, frame)
    _timings(report, frame)
    report.table("timing-warnings", "Timing warnings", timing_warnings(frame),
                 "No timing was flagged: every ratio is plausible and every spread small.")
    if not loaded.benchmarks.empty:
        benchmarks = _bench_table(loaded.benchmarks)
        report.section("pytest-benchmark", "pytest-benchmark",
                       tables.sortable_html(benchmarks, "pytest-benchmark-table"),
                       _markdown_table(benchmarks))
    if not loaded.asv.empty:
        report.table("asv", "asv results", loaded.asv.dropna(subset=["value"]), "No asv results.")
    report.table("environment", "Environment", _environment_rows(loaded.environment),
                 "No environment.json next to the results.")
    return report.write(loaded.warnings)
