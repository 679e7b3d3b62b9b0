"""JAX's persistent compilation cache lives in the harness's cache folder, for
isolated workers and in-process runs alike, and a second run compiles nothing
new; a cache the user configured is left alone."""

import json
import os
import subprocess
import sys

import pytest

from adjointbench.suites.isolation import compilation_cache_environment, use_compilation_cache

pytest.importorskip("jax")

SETTINGS = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES")
CELLS = ("--impl", "jax", "--problem", "matvec", "--op", "jvp,vjp", "--dtype", "float64",
         "--size", "8", "--quiet")


def _check(tmp_path, out: str, *extra) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env["ADJOINTBENCH_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run([sys.executable, "-m", "adjointbench", "check", *CELLS, *extra,
                           "--out", str(tmp_path / out)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in (tmp_path / out / "results.jsonl").open()]


def _entries(tmp_path) -> set[str]:
    folder = tmp_path / "cache" / "jax"
    return {p.name for p in folder.glob("*-cache")} if folder.is_dir() else set()


@pytest.mark.parametrize("mode", [(), ("--in-process",)], ids=["isolated", "in_process"])
def test_a_second_run_finds_every_compilation_in_the_cache_folder(tmp_path, mode):
    first = _check(tmp_path, "first", *mode)
    kept = _entries(tmp_path)
    assert kept, "the run kept no XLA compilation in ADJOINTBENCH_CACHE_DIR/jax"
    second = _check(tmp_path, "second", *mode)
    assert _entries(tmp_path) == kept  # nothing compiled anew
    assert [r["outcome"] for r in first] == [r["outcome"] for r in second] == ["ok", "ok"]


def test_a_cache_the_user_configured_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    assert compilation_cache_environment(tmp_path) == {}
    use_compilation_cache(tmp_path)
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "mine")


def test_in_process_settings_reach_a_jax_already_loaded(tmp_path, monkeypatch):
    jax = pytest.importorskip("jax")
    for name in SETTINGS:  # restored afterwards, whether set or not
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    before = {name.lower(): getattr(jax.config, name.lower()) for name in SETTINGS}
    try:
        use_compilation_cache(tmp_path)
        assert jax.config.jax_compilation_cache_dir == str((tmp_path / "jax").resolve())
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
        assert os.environ["JAX_COMPILATION_CACHE_DIR"] == jax.config.jax_compilation_cache_dir
    finally:
        for name, value in before.items():
            jax.config.update(name, value)
