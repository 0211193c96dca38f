r"""The package's precision policy (docs/accelerators.md): float32 means float32 on every backend.

XLA runs float32 matrix products on recent NVIDIA GPUs in TF32 (10-bit mantissa inputs) and on
TPUs in bfloat16 passes unless a product asks for more. Every product that computes energies,
local fields, conditionals, losses, enumerations, statistics or sampling probabilities goes
through `matmul`/`einsum` below (or passes `precision=HIGHEST` itself): the precision is
written into each `dot_general` when it is traced, so it holds inside a user's `jax.jit` and
whatever `jax_default_matmul_precision` says. tests/test_precision.py lowers every public
numerical function and fails on any `dot_general` without it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


def matmul(a, b):
    """`a @ b` in full precision of the operands' dtype."""
    return jnp.matmul(a, b, precision=HIGHEST)


def einsum(subscripts: str, *operands):
    """`jnp.einsum` in full precision of the operands' dtype."""
    return jnp.einsum(subscripts, *operands, precision=HIGHEST)
