r"""How JAX runs jaxpotts: one CPU device per core and a persistent compilation cache.

Two JAX settings decide how fast a fit runs on a CPU and both must be made before JAX runs
anything (before its backends start):

1. ``jax_num_cpu_devices``: JAX presents the host CPU as one device unless told otherwise,
   and one XLA CPU program uses about one core for the work jaxpotts does (one GEMM per
   pseudo-likelihood evaluation). With one device per core, the fits split their sequences and
   the samplers their chains over the cores (`jaxpotts.sharding`): a plmDCA iteration of
   PF00763 takes 0.45 s on the project's 2-core CPU instead of 0.65 s.
2. The persistent compilation cache: XLA compiles every program on first use (seconds per
   fit); with a cache folder the next process loads them instead.
3. Patient collectives: with several CPU devices a fit's devices meet in collectives (the sum of
   the gradient over the sequence shards). XLA:CPU aborts the whole process when one device waits
   more than 40 s for another, which happens on a busy machine (a 3n2a fit under `nice` beside
   other jobs was killed after 40 minutes). `configure` raises that limit to an hour, and the
   "may be stuck" warning from 20 s to 10 minutes, through ``XLA_FLAGS`` (read when JAX's
   backend starts; a value the user put there is kept).

`configure` makes both choices, and `import jaxpotts` calls it, so a library user gets what the
command line gets. It never overrides a choice the user made: a device count set by
``JAX_NUM_CPU_DEVICES``, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` or
``jax.config.update("jax_num_cpu_devices", N)`` is kept, as is a cache folder set by
``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update("jax_compilation_cache_dir", ...)``, and
nothing about devices changes once JAX runs. Set ``JAXPOTTS_CONFIGURE_JAX=0`` before importing
jaxpotts to leave JAX entirely alone (JAX's own defaults: one CPU device, no cache).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax

__all__ = ["configure", "OPT_OUT_VARIABLE", "COLLECTIVE_TIMEOUTS"]

#: Environment variable: "0" (or "false", "no", "off") before `import jaxpotts` skips `configure`.
OPT_OUT_VARIABLE = "JAXPOTTS_CONFIGURE_JAX"


#: XLA:CPU collective timeouts (seconds) that `configure` puts into ``XLA_FLAGS``.
COLLECTIVE_TIMEOUTS = {
    "xla_cpu_collective_call_terminate_timeout_seconds": 3600,
    "xla_cpu_collective_call_warn_stuck_timeout_seconds": 600,
}


def _patient_collectives() -> list[str]:
    """Add `COLLECTIVE_TIMEOUTS` to ``XLA_FLAGS`` (those the user did not set); returns the added flags."""
    flags = os.environ.get("XLA_FLAGS", "")
    added = [f"--{name}={value}" for name, value in COLLECTIVE_TIMEOUTS.items() if name not in flags]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()
    return added


def _user_chose_devices() -> bool:
    return (
        "JAX_NUM_CPU_DEVICES" in os.environ
        or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
        or int(jax.config.jax_num_cpu_devices) != -1
    )


def _cache_folder(cache_dir: Any) -> str | None:
    """The cache folder to set, or None to leave JAX's setting (or no cache)."""
    if cache_dir is not None:
        return os.fspath(cache_dir) or None
    if "JAX_COMPILATION_CACHE_DIR" in os.environ or jax.config.jax_compilation_cache_dir is not None:
        return None  # the user's (or JAX's own) choice wins
    cache = os.environ.get("JAXPOTTS_CACHE_DIR")
    if cache is None:
        cache = str(Path.home() / ".cache" / "jaxpotts" / "xla")
    return cache or None  # JAXPOTTS_CACHE_DIR="" turns it off


def configure(*, cpu_devices: int | None = None, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    r"""Set JAX up for jaxpotts, as the command line and `import jaxpotts` do.

    1. CPU devices: `cpu_devices` given: `jaxpotts.sharding.use_cpu_cores(cpu_devices)` (raises
       RuntimeError if JAX already runs with another count). Default: one device per usable core,
       unless JAX already runs or the user chose a count (``JAX_NUM_CPU_DEVICES``, ``XLA_FLAGS``
       with ``--xla_force_host_platform_device_count``, ``jax.config.jax_num_cpu_devices``).
    2. Persistent compilation cache in `cache_dir`; default ``JAXPOTTS_CACHE_DIR``, else
       ``~/.cache/jaxpotts/xla``; an empty string turns it off; without `cache_dir` a folder
       set through JAX (``JAX_COMPILATION_CACHE_DIR``, ``jax.config``) is kept. Programs are
       cached whatever their compile time (``jax_persistent_cache_min_compile_time_secs = 0``)
       unless ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise. The cache can be
       set at any time; it serves the programs compiled afterwards.
    3. `COLLECTIVE_TIMEOUTS` added to ``XLA_FLAGS`` unless the user set them (effective only
       before JAX's backend starts, like the device count).

    Returns what was set: ``{"cpu_devices": n or None, "cache_dir": folder or None,
    "xla_flags": [added flags]}`` (None or []: left as it was).
    """
    from .sharding import use_cpu_cores

    done: dict[str, Any] = {"cpu_devices": None, "cache_dir": None, "xla_flags": _patient_collectives()}
    if cpu_devices is not None:
        done["cpu_devices"] = use_cpu_cores(cpu_devices)
    elif not _user_chose_devices():
        try:
            done["cpu_devices"] = use_cpu_cores()
        except RuntimeError:  # JAX already runs (with another count): leave its devices alone
            pass
    cache = _cache_folder(cache_dir)
    if cache is not None:
        jax.config.update("jax_compilation_cache_dir", cache)
        if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        done["cache_dir"] = cache
    return done
