"""The report: built from real sweeps, robust to partial and hostile results,
and checked in a real browser (headless Chromium)."""

import json
from pathlib import Path

import pytest

from adjointbench.cli import main
from adjointbench.reports.load import load, read_asv
from adjointbench.reports.render import SECTIONS, escape_markdown, render
from adjointbench.suites.results import Record, ResultsFile

SECTION_IDS = ["headline", "summary", "failures", "correctness", *[s.id for s in SECTIONS],
               "timings", "environment"]
HOSTILE = '<script>alert("x")</script>|*_'


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A small real check and bench, with every kind of plot's data."""
    out = tmp_path_factory.mktemp("results")
    check = ["check", "--impl", "numpy,naive,jax", "--problem",
             "matmul,softmax,diffusion,gd_trajectory,linear_system", "--size", "1,2,4,8,100",
             "--out", str(out), "--quiet", "--in-process"]
    assert main(check) == 0
    bench = ["bench", "--impl", "numpy,naive", "--problem", "matmul,softmax,batched_sin",
             "--size", "1,4,8,32,100,1000", "--budget", "0.01", "--out", str(out), "--quiet",
             "--in-process"]
    assert main(bench) == 0
    second = ["bench", "--impl", "jax", "--problem", "softmax", "--op", "hvp", "--method",
              "forward_over_reverse,reverse_over_reverse", "--size", "100,1000", "--budget",
              "0.01", "--out", str(out), "--quiet", "--in-process", "--resume"]
    assert main(second) == 0
    return out


@pytest.fixture(scope="module")
def report(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    return out


def test_report_writes_page_summary_and_every_plot(report):
    page = (report / "index.html").read_text()
    for section in SECTION_IDS:
        assert f'id="{section}"' in page
    assert page.index('id="headline"') < page.index('id="summary"')  # the headline first
    for name in ("time-vjp", "ratio", "adjoint", "batched", "unrolling"):
        png = report / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({'plots/' + name}.png)" in (report / "summary.md").read_text()
    # self-contained: every image is a data URI, nothing is fetched
    assert "src=\"http" not in page and "href=\"http" not in page
    assert page.count("<img") == page.count('src="data:image/png;base64,') == len(SECTIONS)


def test_headline_and_correctness_tables_match_the_results(results, report):
    from adjointbench.reports.tables import implementation_headline

    records, _ = ResultsFile(results).read()
    loaded = load(results)
    headline = implementation_headline(loaded.results).set_index("implementation")
    for impl in ("numpy", "naive", "jax"):
        mine = [r for r in records if r.impl == impl and r.suite == "check"]
        assert headline.at[impl, "ok"] == sum(r.outcome == "ok" for r in mine)
        assert headline.at[impl, "unsupported"] == sum(r.outcome == "unsupported" for r in mine)
    ratios = [r.ratio_to_primal for r in records if r.impl == "numpy" and r.op == "vjp"
              and r.suite == "bench" and r.outcome == "ok"]
    geometric = float(__import__("numpy").exp(__import__("numpy").log(ratios).mean()))
    assert float(headline.at["numpy", "vjp / primal"]) == pytest.approx(geometric, rel=1e-2)
    page = (report / "index.html").read_text()
    matrix = page[page.index('id="correctness"'):page.index('id="time-primal"')]
    assert "<table" in matrix and "<img" not in matrix  # numbers as text, not an image
    assert 'title="ok"' in matrix and "<h3>naive</h3>" in matrix


def test_a_timing_stands_beside_its_rules_check_verdict(plugins_on_path, tmp_path):
    """A fast time of a wrong rule is marked with its verdict and never
    crowned the fastest; a rule without check cells is "not checked"."""
    from adjointbench.reports.tables import fastest_headline, timing_table

    wrong = "untrustworthy:cos_sign"  # right only where cos x > 0
    common = ["--problem", "scalar_sin", "--op", "jvp", "--dtype", "float64", "--out",
              str(tmp_path), "--quiet", "--in-process"]
    assert main(["check", "--impl", f"numpy,{wrong}", *common]) == 1  # the mismatch
    assert main(["bench", "--impl", f"numpy,{wrong},naive", "--budget", "0.01", "--resume",
                 *common]) == 0
    frame = load(tmp_path).results
    table = timing_table(frame).set_index("impl")
    assert table.at[wrong, "checked"] == "mismatch"
    assert table.at["numpy", "checked"] == "ok"
    assert table.at["naive", "checked"] == "not checked"
    bench = frame["suite"] == "bench"
    frame.loc[bench & (frame["impl"] == wrong), "time_median_s"] = 1e-12  # fastest by far
    frame.loc[bench & (frame["impl"] == "naive"), "time_median_s"] = 1.0
    winners = " ".join(fastest_headline(frame)["fastest (problems won)"])
    assert wrong not in winners and "numpy" in winners


def test_timings_that_missed_work_are_no_ones_fastest():
    """A cell whose work was left to to_numpy, cheaper than the forward pass
    it includes, or timed on more cores than its threads is not crowned; an
    implementation that left work to
    to_numpy anywhere is left out at every size (its small cells hide it
    below the warning's floor)."""
    import pandas as pd

    from adjointbench.reports.tables import fastest_headline
    from adjointbench.suites.results import Record

    def timed(impl, problem, op, size, median, to_numpy_s=None, ratio_q3=2.0, cores=1.0):
        return Record(problem, impl, op, "float64", "cpu", size, 0, "ok", suite="bench",
                      time_median_s=median, to_numpy_s=to_numpy_s, ratio_q3=ratio_q3,
                      threads=1, cores=cores).to_json()

    honest = [timed(impl, p, op, n, scale * n) for impl, scale in (("numpy", 1e-3),
                                                                   ("naive", 1e-2))
              for p in ("matmul", "softmax") for op in ("jvp", "vjp") for n in (8, 1024)]
    lazy = [timed("lazy", p, op, 8, 1e-7, to_numpy_s=5e-5) for p in ("matmul", "softmax")
            for op in ("jvp", "vjp")]  # below the floor: not warned, but the same thunk
    lazy += [timed("lazy", "matmul", op, 1024, 1e-7, to_numpy_s=0.5) for op in ("jvp", "vjp")]
    lazy += [timed("lazy", "softmax", op, 1024, 1e-7, to_numpy_s=1e-8) for op in ("jvp", "vjp")]
    dropping = [timed("dce", "softmax", "vjp", n, 1e-9, ratio_q3=0.5) for n in (8, 1024)]
    dropping += [timed("dce", "softmax", "jvp", n, 1e-9) for n in (8, 1024)]
    busy = [timed("busy", "matmul", "vjp", n, 1e-9, cores=1.9) for n in (8, 1024)]
    winners = fastest_headline(pd.DataFrame(honest + lazy + dropping + busy)).set_index(
        ["operation", "size"])["fastest (problems won)"]
    assert not any("lazy" in w or "busy" in w for w in winners)  # two cores against one
    assert winners["vjp", "largest"] == "numpy 2"  # dce's vjp below its primal: not counted
    assert sorted(winners["jvp", "largest"].split(", ")) == ["dce 1", "numpy 1"]  # believed

def test_every_implementation_keeps_its_colour_across_figures():
    from adjointbench.reports.plots import implementation_colour, method_marker

    before = {n: implementation_colour(n) for n in ("numpy", "jax", "torch", "mine")}
    assert len(set(before.values())) == 4
    assert implementation_colour("other_plugin") is not None  # a new name moves no other
    assert {n: implementation_colour(n) for n in before} == before
    assert method_marker("forward_over_reverse") != method_marker("reverse_over_reverse")


def test_no_legend_leaves_its_figure(results):
    from adjointbench.reports.render import _mathtext_escaped

    frame = _mathtext_escaped(load(results).results)
    drawn = 0
    for section in SECTIONS:
        fig = section.plot(frame)
        if fig is None:
            continue
        fig.canvas.draw()
        box = fig.bbox
        for legend in fig.legends:
            extent = legend.get_window_extent()
            assert (extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1
                    and extent.y0 >= box.y0 - 1 and extent.y1 <= box.y1 + 1), section.id
            drawn += 1
    assert drawn >= 4


def test_summary_counts_match_the_results(results, report):
    records, _ = ResultsFile(results).read()
    summary = (report / "summary.md").read_text()
    ok_numpy_check = sum(r.outcome == "ok" and r.impl == "numpy" and r.suite == "check"
                         for r in records)
    assert f"| check | numpy | {ok_numpy_check} |" in summary


def _hostile_results(folder: Path) -> None:
    folder.mkdir()
    records = [
        Record("matmul", HOSTILE, "vjp", "float64", "cpu", 8, 0, "mismatch", max_rel_err=1e-3,
               message=HOSTILE),
        Record("matmul", "numpy", "vjp", "float64", "cpu", 8, 0, "crashed",
               message="the worker running numpy killed by signal SIGSEGV"),
        Record("matmul", "numpy", "primal", "float64", "cpu", 8, 0, "ok", suite="bench",
               time_median_s=1e-5, primal_median_s=1e-5, ratio_to_primal=1.0),
    ]
    text = "".join(json.dumps(r.to_json()) + "\n" for r in records)
    (folder / "results.jsonl").write_text(text + '{"problem": "matm')  # cut short


def test_partial_failed_and_hostile_results_render(tmp_path):
    _hostile_results(tmp_path / "results")
    loaded = load(tmp_path / "results")
    assert any("damaged" in w for w in loaded.warnings)
    assert any("environment" in w for w in loaded.warnings)
    page = render(loaded, tmp_path / "report").read_text()
    assert HOSTILE not in page and "&lt;script&gt;" in page
    assert "crashed" in page and "SIGSEGV" in page
    assert "No data for this plot" in page  # sections without data say so
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert HOSTILE not in summary and escape_markdown(HOSTILE) in summary


def _section(page: str, id: str) -> str:
    return page.split(f'id="{id}"')[1].split("<section")[0]


def test_an_empty_plot_names_the_command_whose_results_draw_it(tmp_path):
    """The main job times no HVP, so its second-order section is empty: it
    names `bench --op hvp`, whose results, added, draw the plot."""
    out = tmp_path / "results"
    assert main(["bench", "--impl", "numpy", "--problem", "softmax", "--op", "primal",
                 "--quick", "--budget", "0.01", "--in-process", "--quiet", "--out", str(out)]) == 0
    page = render(load(out), tmp_path / "report").read_text()
    told = "No data for this plot in these results: <code>adjointbench bench --op hvp</code>"
    assert told in _section(page, "second-order")
    assert "`adjointbench bench --op hvp` records it" in (tmp_path / "report" /
                                                          "summary.md").read_text()
    assert main(["bench", "--impl", "numpy", "--problem", "softmax", "--op", "hvp", "--quick",
                 "--budget", "0.01", "--in-process", "--quiet", "--out", str(out),
                 "--resume"]) == 0
    page = render(load(out), tmp_path / "report").read_text()
    assert "No data" not in _section(page, "second-order")
    assert '<img src="data:image/png;base64,' in _section(page, "second-order")


def test_empty_results_render(tmp_path):
    (tmp_path / "results").mkdir()
    page = render(load(tmp_path / "results"), tmp_path / "report").read_text()
    assert "No cells in these results." in page


def test_pytest_benchmark_and_asv_results_are_included(results, tmp_path):
    bench = {"benchmarks": [{"group": "matmul-vjp-n8-float64-cpu", "name": "t[numpy]",
                             "stats": {"median": 2e-5, "iqr": 1e-6, "rounds": 5},
                             "extra_info": {"impl": "numpy", "op": "vjp", "problem": "matmul",
                                            "size": 8, "ratio_to_primal": 2.0}}]}
    (tmp_path / "b.json").write_text(json.dumps(bench))
    asv = tmp_path / "asv" / "machine"
    asv.mkdir(parents=True)
    (asv / "abc-existing.json").write_text(json.dumps({
        "commit_hash": "abcdef123", "result_columns": ["result", "params"],
        "results": {"bench_primitives.matmul_vjp.time_vjp":
                    [[1e-5, None], [["'numpy'", "'jax'"], ["8"]]]}}))
    assert len(read_asv(tmp_path / "asv")) == 2
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "r"),
                 "--benchmark-json", str(tmp_path / "b.json"), "--asv",
                 str(tmp_path / "asv")]) == 0
    page = (tmp_path / "r" / "index.html").read_text()
    assert 'id="pytest-benchmark"' in page and "matmul-vjp-n8-float64-cpu" in page
    assert 'id="asv"' in page and "bench_primitives.matmul_vjp.time_vjp" in page


def test_report_of_a_missing_folder_exits_2(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path)]) == 2  # a folder, but not of results
    assert "holds no results.jsonl; give the --out folder" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


# --- in a real browser ---

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium; the test never installs it (.ci/run does, with apt-get)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"{CHROMIUM} and {CHROMEDRIVER} are absent: install Debian's chromium and "
                    "chromium-driver (apt-get install chromium chromium-driver), as .ci/run does")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_report_in_headless_chromium(report, browser):
    browser.get((report / "index.html").resolve().as_uri())
    sections = browser.execute_script(
        "return Array.from(document.querySelectorAll('section')).map(s => s.id)")
    assert set(SECTION_IDS) <= set(sections)
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(images) >= 5
    for alt, complete, width in images:
        assert complete and width > 0, f"image {alt!r} did not load"
    assert browser.execute_script("return document.querySelector('section').id") == "headline"
    # the timing table sorts by a numeric column and filters by words
    sorted_values = browser.execute_script("""
        var table = document.getElementById('timings-table');
        var column = Array.from(table.tHead.rows[0].cells).findIndex(
            th => th.textContent === 'time_median_s');
        table.tHead.rows[0].cells[column].click();
        return Array.from(table.tBodies[0].rows).map(r => parseFloat(r.cells[column].dataset.v));
    """)
    assert len(sorted_values) > 5 and sorted_values == sorted(sorted_values)
    shown = browser.execute_script("""
        var box = document.getElementById('timings-table-filter');
        box.value = 'softmax vjp'; box.dispatchEvent(new Event('input'));
        return Array.from(document.getElementById('timings-table').tBodies[0].rows)
            .filter(r => r.style.display !== 'none').map(r => r.textContent);
    """)
    assert shown and all("softmax" in row and "vjp" in row for row in shown)
    shot = report / "screenshot.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
