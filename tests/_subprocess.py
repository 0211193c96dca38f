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
    e.update(JAX_PLATFORMS="cpu", MPLBACKEND="Agg", JAX_COMPILATION_CACHE_DIR=str(cache_dir),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    return e


def run(argv, cache_dir: Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env=env(cache_dir), capture_output=True,
                          text=True, timeout=timeout)


def assert_figure(path: Path) -> None:
    """PNG and PDF both exist and are not empty."""
    for suffix in (".png", ".pdf"):
        p = path.with_suffix(suffix)
        assert p.exists(), f"{p} was not written"
        assert p.stat().st_size > 2000, f"{p} is (nearly) empty"
