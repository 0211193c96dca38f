"""Is adabmDCA usable from another interpreter? One probe for every benchmark that runs it
(benchmarks/sampling.py, benchmarks/boltzmann.py); standard library only."""

from __future__ import annotations

import json
import subprocess

_PROBE = (
    "import json; from importlib.metadata import version; import adabmDCA, torch; "
    "print(json.dumps({'adabmDCA': version('adabmDCA'), 'torch': torch.__version__}))"
)


def peer_versions(python: str | None) -> dict | None:
    """``{"adabmDCA": version, "torch": version}`` if `python` can import adabmDCA and torch, else None."""
    if not python:
        return None
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=300)
    except OSError:
        return None
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]) if out.returncode == 0 and lines else None
