"""Running the command line and the examples in subprocesses (shared by test_cli and test_examples)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def env(cache_dir: Path) -> dict:
    """The environment of a child process: CPU, a persistent XLA compilation cache shared by the
    tests of one session (identical programs compile once), matplotlib without a display."""
    e = dict(os.environ)
    e.update(
        JAX_PLATFORMS="cpu",
        MPLBACKEND="Agg",
        JAX_COMPILATION_CACHE_DIR=str(cache_dir),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
    )
    return e


def run(argv, cache_dir: Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *map(str, argv)], cwd=cwd, env=env(cache_dir), capture_output=True, text=True, timeout=timeout
    )


def assert_figure(path: Path) -> None:
    """PNG and PDF both exist and are not empty."""
    for suffix in (".png", ".pdf"):
        p = path.with_suffix(suffix)
        assert p.exists(), f"{p} was not written"
        assert p.stat().st_size > 2000, f"{p} is (nearly) empty"


_BATCH = r"""
import contextlib, io, json, sys, time, traceback
from jaxpotts import cli
cases = json.load(open(sys.argv[1]))
results = {}
for name, argv in cases.items():
    out, err = io.StringIO(), io.StringIO()
    raised, t0 = None, time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
        except BaseException as exc:  # only with --debug: the traceback is the user's to see
            code, raised = None, "".join(traceback.format_exception(exc))
    results[name] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "raised": raised,
                     "seconds": time.perf_counter() - t0}
json.dump(results, open(sys.argv[2], "w"))
"""


def run_cli_batch(cases: dict, cache_dir: Path, cwd: Path, timeout: float = 600) -> dict:
    """Run many `jaxpotts` command lines (name -> argv) in one child process, in order, each
    through `jaxpotts.cli.main` with its stdout/stderr captured: {name: {code, stdout, stderr,
    raised}} (one JAX start-up for all; `raised` is the traceback of an exception that escaped
    main, which only --debug allows)."""
    import json

    spec, result = Path(cwd) / "_cli_cases.json", Path(cwd) / "_cli_results.json"
    spec.write_text(json.dumps({k: [str(a) for a in v] for k, v in cases.items()}))
    proc = run(["-c", _BATCH, spec, result], cache_dir, cwd, timeout=timeout)
    assert proc.returncode == 0, f"the CLI batch failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(result.read_text())
