r"""Scale-out with JAX's own sharding: one device mesh over the data (sequences).

Pseudo-likelihood and MLM losses are sums over sequences, so they split exactly over devices:
each device evaluates the loss (and its gradient) on its share of the rows, and a `psum` adds
the shares up. `fit(..., mesh=data_mesh())` does that for every model; the parameters are
replicated and the optimiser runs unchanged.

On a CPU, XLA presents the whole machine as one device and runs most of the hot loops of this
package (gathers, scatters, scans) on one thread. Splitting the host into one device per core
(`use_cpu_cores()`, before JAX runs anything) and sharding the data over them uses every core:
on the project's 2-core machine the dense pseudo-likelihood gradient of PF00763 runs 2x faster.
The same code runs over the GPUs or TPUs of a host unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "use_cpu_cores",
    "data_mesh",
    "default_mesh",
    "resolve_mesh",
    "pl_work",
    "pad_rows",
    "sum_over_rows",
    "to_one_device",
    "replicate",
]

DATA_AXIS = "data"


def use_cpu_cores(n: int | None = None) -> int:
    """Present the host CPU as `n` JAX devices (default: the number of usable cores).

    Must run before JAX executes anything (it sets ``jax_num_cpu_devices``); afterwards it
    raises a `RuntimeError` saying so, unless the CPU already has `n` devices. Returns `n`.
    """
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    try:
        jax.config.update("jax_num_cpu_devices", int(n))
    except RuntimeError as err:
        if len(jax.devices("cpu")) == n:
            return int(n)
        raise RuntimeError(
            f"use_cpu_cores({n}) must be called before JAX runs any computation (the CPU already has "
            f"{len(jax.devices('cpu'))} device(s)); call it right after importing jaxpotts"
        ) from err
    return int(n)


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-dimensional mesh (axis `DATA_AXIS`) over `devices` (default: all devices of the
    default backend)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("data_mesh needs at least one device")
    return Mesh(np.array(devices), (DATA_AXIS,))


#: Least work per device (floats read per loss evaluation, `pl_work`) for which `default_mesh`
#: splits a computation. Below it the collectives and the larger program cost more than the
#: split saves: on the project's 2-core CPU a plmDCA iteration of PF00014 (3617 x 53, 2.1e8)
#: took 59 ms on one device and 83 ms on two, one of PF00763 (3.1e9) 0.65 s and 0.45 s
#: (2026-12-05; before the larger pseudo-likelihood blocks: 88 / 143 ms and 1.86 / 1.10 s).
MIN_WORK_PER_DEVICE = 2.5e8


def pl_work(rows: int, L: int, q: int) -> float:
    """Floats read by one pseudo-likelihood evaluation of a dense model: rows x L x (L q)."""
    return float(rows) * L * L * q


def default_mesh(work: float | None = None) -> Mesh | None:
    """`data_mesh()` when the default backend has several devices and, if given, the `work` of
    one loss evaluation (`pl_work`) is at least `MIN_WORK_PER_DEVICE` per device; else None."""
    n = len(jax.devices())
    if n < 2 or (work is not None and work < MIN_WORK_PER_DEVICE * n):
        return None
    return data_mesh()


def resolve_mesh(mesh, work: float):
    """A fit's ``mesh`` argument: "auto" -> `default_mesh(work)`, None or a `Mesh` as given."""
    if isinstance(mesh, str):
        if mesh != "auto":
            raise ValueError(f"mesh must be 'auto', None or a jax.sharding.Mesh, got {mesh!r}")
        return default_mesh(work)
    return mesh


def _put(tree, target, keep: Callable[[jax.Array], bool]):
    """Array leaves of `tree` moved to the sharding `target`, except those `keep` accepts."""
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(x, target) if isinstance(x, jax.Array) and not keep(x) else x, tree
    )


def to_one_device(tree, device: jax.Device | None = None):
    """Every array leaf of `tree` whole on one device (default: the first of the default backend).

    Results of computations over a mesh can stay split over its devices (the L-BFGS memory
    and the parameters it updates are); later single-device work on them (sampling a fitted
    model, say) would then run a collective in every step of its loop. Leaves that are already
    whole on that device are returned as they are."""
    target = jax.sharding.SingleDeviceSharding(jax.devices()[0] if device is None else device)
    return _put(tree, target, lambda x: x.sharding == target)


def replicate(tree, mesh: Mesh, *, keep_placed: bool = False):
    """Every array leaf of `tree` whole on each device of `mesh`.

    With ``keep_placed=True`` leaves already placed on `mesh` (whole or split, as a compiled
    program left them) stay as they are: only new state is put on the mesh, so a program fed
    its own outputs sees the input placements it was compiled for."""

    def on_mesh(x):
        return keep_placed and isinstance(x.sharding, jax.sharding.NamedSharding) and x.sharding.mesh == mesh

    return _put(tree, jax.sharding.NamedSharding(mesh, PartitionSpec()), on_mesh)


def pad_rows(n_shards: int, *arrays: jax.Array) -> tuple[jax.Array, ...]:
    """Pad the leading axis of every array with zeros to a multiple of `n_shards`.

    Zero rows are harmless where they carry zero weight (the weights are among the arrays)."""
    M = arrays[0].shape[0]
    pad = -M % n_shards
    if not pad:
        return arrays
    return tuple(jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]) for a in arrays)


def sum_over_rows(fn: Callable, mesh: Mesh | None, *, check_vma: bool = True) -> Callable:
    """`g(replicated, *rows) = sum of fn(replicated, *row shards)` over the devices of `mesh`.

    `fn(replicated, *rows)` returns a pytree of partial sums over its rows (each row array
    has the sequences on its leading axis); the result is that pytree summed over the shards
    (`psum`). Rows are padded with zeros to a multiple of the mesh size, so `fn` must give
    zero for a zero-weight row. With `mesh=None` (or a one-device mesh) `fn` runs as is.
    Differentiable when `fn` is, with ``check_vma=True``; ``check_vma=False`` is for functions
    (such as custom-VJP kernels) that are not differentiated through the shard map.
    """
    if mesh is None or mesh.size == 1:
        return fn

    n = mesh.size

    def local(replicated, *rows):
        return jax.tree_util.tree_map(lambda x: jax.lax.psum(x, DATA_AXIS), fn(replicated, *rows))

    def g(replicated, *rows):
        rows = pad_rows(n, *rows)
        rep = jax.tree_util.tree_map(lambda _: PartitionSpec(), replicated)
        mapped = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(rep,) + (PartitionSpec(DATA_AXIS),) * len(rows),
            out_specs=PartitionSpec(),
            check_vma=check_vma,
        )
        return mapped(replicated, *rows)

    return g
