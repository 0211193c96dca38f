"""Shared test fixtures.

Run-to-run determinism on GPUs: XLA's GPU scatter-add (the gradient of every gather: attention
values, dense pseudo-likelihood rows, `take_along_axis`) accumulates with floating-point
atomics in whatever order the threads arrive, so two runs of the same compiled step can differ
in the last bits and the bitwise tests (same key same fit, resumed fit == uninterrupted fit)
would fail by chance. `--xla_gpu_deterministic_ops=true` makes XLA use deterministic
implementations; it is set here, before any backend starts, for the whole test session (and
for the subprocesses it starts, which inherit the environment). It has no effect on CPU.
docs/accelerators.md says the same to users.

`import jaxpotts` sets JAX up with one CPU device per core and a compilation cache
(`jaxpotts.runtime`); the test session and the processes it starts keep JAX's own defaults (one
CPU device, as the tests were written for) through ``JAXPOTTS_CONFIGURE_JAX=0``, unless the
variable is already set. tests/test_runtime.py checks the setup itself in fresh processes.
"""

import os

_DETERMINISTIC = "--xla_gpu_deterministic_ops=true"
if "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _DETERMINISTIC).strip()

os.environ.setdefault("JAXPOTTS_CONFIGURE_JAX", "0")

import jax  # noqa: E402
import pytest  # noqa: E402


def enable_x64(on: bool = True):
    """Context manager turning float64 on (or off): jax.enable_x64 on jax >= 0.8, else
    jax.experimental.enable_x64 (the declared floor, jax 0.6.1, has only the latter)."""
    ctx = getattr(jax, "enable_x64", None)
    if ctx is None:  # pragma: no cover - older jax
        from jax.experimental import enable_x64 as ctx
    return ctx(on)


@pytest.fixture
def x64():
    """Run the test with float64 enabled."""
    with enable_x64():
        yield
