"""Input checks shared by the package.

Checks on *values* (finiteness, zero diagonals, symmetry) can only run on concrete arrays;
inside `jit`/`vmap`/`grad` the arrays are tracers and the checks are skipped. Shape checks
always run, because shapes are static.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def concrete(x: Any) -> np.ndarray | None:
    """The value of `x` as a numpy array, or None when `x` is a tracer."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def as_float_array(x: Any, name: str) -> jax.Array:
    """`x` as a floating JAX array (integers are promoted to the default float type)."""
    if isinstance(x, jax.core.Tracer):
        arr = x
    else:
        try:
            arr = jnp.asarray(x)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}") from err
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def check_ndim(x: jax.Array, ndim: int, name: str, dims: str) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape {dims} ({ndim} dimensions), got shape {tuple(x.shape)}")


def check_finite(x: Any, name: str) -> None:
    value = concrete(x)
    if value is not None and not np.all(np.isfinite(value)):
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")


def symmetry_tolerance(x: np.ndarray) -> float:
    """Absolute tolerance for 'symmetric up to rounding' at the array's precision."""
    scale = float(np.max(np.abs(x))) if x.size else 0.0
    return 64 * float(np.finfo(x.dtype).eps) * max(scale, 1.0)


def check_sequences(seqs: Any, L: int, q: int, name: str = "sequences") -> jax.Array:
    """Integer colour sequences with trailing length L and colours in 0..q-1."""
    if isinstance(seqs, jax.core.Tracer):
        arr = seqs
    else:
        arr = jnp.asarray(seqs)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        value = concrete(arr)
        if value is not None and jnp.issubdtype(arr.dtype, jnp.floating) and np.all(value == np.round(value)):
            arr = arr.astype(jnp.int32)
        else:
            raise TypeError(f"{name} must hold integer colours 0..{q - 1}, got dtype {arr.dtype}")
    if arr.ndim < 1 or arr.shape[-1] != L:
        raise ValueError(f"{name} must have last dimension L={L}, got shape {tuple(arr.shape)}")
    value = concrete(arr)
    if value is not None and value.size:
        lo, hi = int(value.min()), int(value.max())
        if lo < 0 or hi >= q:
            raise ValueError(f"{name} contain colour(s) outside 0..{q - 1} (found min {lo}, max {hi})")
    return arr.astype(jnp.int32)


def check_count(value: Any, name: str, minimum: int = 1, *, optional: bool = False) -> int | None:
    """An integer >= `minimum` (bools refused); None passes when `optional`."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = " or None" if optional else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{kind}, got {value!r}")
    return int(value)


def check_nonnegative(value: Any, name: str) -> float:
    """A finite real number >= 0 (bools refused)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if not ok or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def enable_x64():
    """A context in which JAX computes in float64 (for checks and theory that need it), leaving
    the global setting as it was afterwards."""
    import jax

    ctx = getattr(jax, "enable_x64", None)
    if ctx is None:  # pragma: no cover - older jax
        from jax.experimental import enable_x64 as ctx
    return ctx(True)
