"""`import jaxpotts` sets JAX up as the CLI does, never against the user's choices (jaxpotts.runtime).

Each case runs in a fresh interpreter: the device count is fixed once JAX starts.
"""

import json
import os
import subprocess
import sys

import pytest

from jaxpotts.runtime import COLLECTIVE_TIMEOUTS, OPT_OUT_VARIABLE

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
REPORT = "import jax, json; print(json.dumps([len(jax.devices('cpu')), jax.config.jax_compilation_cache_dir]))"


def _run(code: str, **env_changes) -> list:
    env = {k: v for k, v in os.environ.items() if k not in (OPT_OUT_VARIABLE, "JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    env = {k: v for k, v in env.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env.update(JAX_PLATFORMS="cpu", **env_changes)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "before, env, expected",
    [
        ("", {}, [CORES, "CACHE"]),  # a library user gets the CLI's setup
        ("", {OPT_OUT_VARIABLE: "0"}, [1, None]),  # opted out: JAX's defaults
        ("", {"JAX_NUM_CPU_DEVICES": "1", "JAX_COMPILATION_CACHE_DIR": "/tmp/theirs"}, [1, "/tmp/theirs"]),
        ("import jax; jax.config.update('jax_num_cpu_devices', 3)\n", {}, [3, "CACHE"]),
        ("import jax.numpy as jnp; jnp.ones(2).block_until_ready()\n", {}, [1, "CACHE"]),  # JAX already runs
    ],
)
def test_import_sets_jax_up_unless_the_user_chose(tmp_path, before, env, expected):
    cache = str(tmp_path / "cache")
    got = _run(before + "import jaxpotts\n" + REPORT, JAXPOTTS_CACHE_DIR=cache, **env)
    assert got == [cache if e == "CACHE" else e for e in expected]


def test_configure_explicit_devices_after_start_raises():
    code = (
        "import jaxpotts, jax, json\n"
        "jax.numpy.ones(2).block_until_ready()\n"
        "try:\n    jaxpotts.configure(cpu_devices=7)\nexcept RuntimeError as e:\n    print(json.dumps(['raised', str(e)]))\n"
    )
    got = _run(code, **{OPT_OUT_VARIABLE: "0"})
    assert got[0] == "raised" and "before JAX runs" in got[1]
    assert _run("import jaxpotts\n" + REPORT, JAXPOTTS_CACHE_DIR="")[1] is None  # "" turns the cache off


def test_import_makes_collectives_patient_and_keeps_the_users_timeout():
    """XLA:CPU must accept the flags (an unknown flag aborts the process) and a 2-device
    collective must run with them; a timeout the user set is kept."""
    code = (
        "import jaxpotts, jax, json, os; import jax.numpy as jnp\n"
        "out = jax.pmap(lambda x: jax.lax.psum(x, 'i'), axis_name='i')(jnp.ones(2))\n"
        "print(json.dumps([float(out[0]), os.environ['XLA_FLAGS']]))"
    )
    total, flags = _run(code, JAX_NUM_CPU_DEVICES="2")
    assert total == 2.0
    for name, value in COLLECTIVE_TIMEOUTS.items():
        assert f"--{name}={value}" in flags
    mine = "--xla_cpu_collective_call_terminate_timeout_seconds=77"
    total, flags = _run(code, JAX_NUM_CPU_DEVICES="2", XLA_FLAGS=mine)
    assert total == 2.0 and "=77" in flags and "terminate_timeout_seconds=3600" not in flags
