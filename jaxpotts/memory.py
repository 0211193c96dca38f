r"""Memory before it is spent: peak-memory estimates of fits and samplers, checked up front.

A fit or a sampler run that needs more memory than the machine has should stop at once with
a message, not after minutes of work or by taking the machine down. `fit_estimate` and
`sample_estimate` add up the arrays a run holds at its peak (from L, q, M, chains, dtype and
the optimiser), `available_memory` says what the machine can give, and `check_memory` refuses
a run whose estimate exceeds it. `jaxpotts.fit`, `jaxpotts.fit_plm` and `jaxpotts.sample`
call it before allocating anything large; their ``max_memory=`` argument (command line:
``--max-memory SIZE``) overrides the budget: a size such as ``"64G"`` or a number of bytes,
or ``"unlimited"`` / ``math.inf`` to skip the check.

Fit estimate (floats of the parameter dtype, $n$ = number of trained parameters;
$n = Lq + L^2q^2$ for plmDCA, $H(L^2 + q^2) + Lq$ for factored attention):

$$\text{peak} \approx c\,n + s_\text{opt}\,n + E + 3 M L \cdot 4\,\text{B} + R ,$$

* $c\,n$ with $c = 14$: the parameters of the loop state entering and leaving one compiled
  chunk (the inputs are not donated, so both live at the chunk boundary), the model passed in
  and the best-so-far copy, and the chunk's temporaries: the line-search candidate, direction
  and new gradient, their flat forms for the optimiser, and for dense models the masked and
  transposed coupling matrices ($W[(j,b),(i,a)] = J_{ij}(a,b)$) of one evaluation and their
  gradients (XLA's memory analysis of a plmDCA chunk: 10.4 parameter copies of temporaries);
* optimiser state, twice (entering and leaving the chunk): L-BFGS with memory $m$ (default 10)
  stores $2m$ vectors $(s_k, y_k)$ plus the gradient, $s_\text{opt} = 2(2m+1)$; Adam two
  moments, $s_\text{opt} = 4$; SGD none. Over a mesh of D devices the estimate is the total:
  replicated arrays count D times (the loop state's parameters and gradient and one
  evaluation's temporaries: 8 of the c copies), arrays held once or split over the devices
  once (the model, the best copy, the optimiser's flat vectors and the L-BFGS memory);
* $E$, one loss evaluation and its gradient: dense models (plmDCA, attention with >= 3 heads)
  use the row-gather kernel of `jaxpotts._dense_pl`, which already works through blocks of
  $B_\text{blk} \le 512$ sequences ($B_\text{blk} L q \le 2^{22}$), so $E$ is
  $6 \cdot B_\text{blk} L q$ floats (at most 96 MiB in float32). Other models
  (attention with 1-2 heads, Transformer) are vmapped over all rows of a batch: logits,
  log-probabilities, one-hot and their cotangents, $E = 8\, r\, L\, q\, \max(H, 1)$ floats for
  $r$ rows (the batch size, or M for full-batch L-BFGS), and $r L^2 (4 d + d_\text{mlp})$ per
  Transformer layer;
* the sequences (host copy, training split and device copy, int32);
* $R$ = 512 MiB for the Python interpreter, the XLA runtime and compiled programs.

Sample estimate: the model (dense: $L^2 q^2 + Lq$ floats; factored: $L^2 + q^2 + Lq$), once per
device that runs chains; chain states $n_c L$ int32; the local fields kept per chain,
$n_c L q$ floats, twice; recorded samples $n_c\, n_s\, L$ int32 and energies $n_c\, n_s$ floats,
twice each (the blocks and their concatenation); plus $R$.

Validation estimate (`jaxpotts.generative.validate`, beyond its sampler run): the two-site
statistics of one set as float32 $(Lq)^2$ arrays: the accumulated $f_{ij}$, $C_{ij}$, its
transposed copy and its float64 $i < j$ extractions, about 8 such arrays, plus the kept
training covariance and flattened statistics of three sets (about 4 more) and the float64
PCA matrix (2 more in float32 units); the three-site entries (sites, colours and the three
sets' values, about 16 numbers per entry) and the 4M-value gather chunk; plus $R$.

The constants were set from the measured peak resident memory (VmHWM) of CPU runs over
several compiled chunks (the peak is at a chunk boundary), e.g. the plmDCA fit with L = 1000,
q = 4, M = 500 on one and two devices in ``tests/test_memory.py`` (docs/inputs.md has the
numbers); they are upper estimates of the arrays, not of the allocator's behaviour, and err on
the large side.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ._dense_pl import block_size

__all__ = [
    "MemoryEstimate",
    "MemoryLimitError",
    "fit_estimate",
    "sample_estimate",
    "validation_estimate",
    "available_memory",
    "check_memory",
    "memory_budget",
    "parse_size",
    "format_bytes",
]

RUNTIME_BYTES = 512 * 2**20  # interpreter, XLA runtime, compiled programs
_PARAM_COPIES = 14  # module docstring: c
_PARAM_COPIES_PER_DEVICE = 8  # of c, those each device of a mesh holds (the rest are held once)
_LBFGS_MEMORY = 10  # jaxpotts.optim.lbfgs default
_COUPLING_ROUTE_HEADS = 3  # jaxpotts.losses: attention with this many heads evaluates through couplings


class MemoryLimitError(MemoryError, ValueError):
    """A run refused because its estimated peak memory exceeds the budget (`check_memory`).
    A `MemoryError`, and a `ValueError` (a bad input: the command line reports it in one line)."""


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """An estimated peak memory in bytes, with the parts it is made of (name -> bytes)."""

    parts: dict

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()))

    def __str__(self) -> str:
        big = sorted(self.parts.items(), key=lambda kv: -kv[1])[:3]
        return f"{format_bytes(self.total)} (" + ", ".join(f"{k} {format_bytes(v)}" for k, v in big) + ")"


def format_bytes(n: float) -> str:
    """Bytes in B, kB, MB, GB or TB (powers of 1000), 3 significant figures."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.3g} TB"  # pragma: no cover


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*$")


def parse_size(text: str | int | float) -> float:
    """A memory size: bytes as a number, or a string '500M', '8G', '1.5T', '64GiB' (K/M/G/T are
    powers of 1000, with 'i' powers of 1024), or 'unlimited' / 'inf' (returns math.inf)."""
    if isinstance(text, bool):
        raise ValueError(f"a memory size must be a number of bytes or a string like '8G', got {text!r}")
    if isinstance(text, (int, float, np.integer, np.floating)):
        value = float(text)
    elif isinstance(text, str):
        if text.strip().lower() in ("unlimited", "inf", "none", "off"):
            return math.inf
        m = _SIZE.match(text)
        if not m:
            raise ValueError(
                f"cannot read {text!r} as a memory size: give bytes or a number with K, M, G or T "
                "(e.g. '8G', '500M'), or 'unlimited'"
            )
        base = 1024 if m.group(3) else 1000
        value = float(m.group(1)) * base ** " KMGT".index(m.group(2).upper() or " ")
    else:
        raise TypeError(f"a memory size must be a number of bytes or a string like '8G', got {type(text).__name__}")
    if not value > 0:
        raise ValueError(f"a memory size must be > 0, got {text!r}")
    return value


def _itemsize(dtype) -> int:
    return np.dtype(dtype if dtype is not None else _default_float()).itemsize


def _default_float():
    import jax.numpy as jnp

    return jnp.result_type(float)


def _count_params(model: Any) -> int:
    import equinox as eqx
    import jax

    return int(sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))))


def _optimizer_slots(optimizer: Any, n_params: int, params: Any = None) -> float:
    """Optimiser state in units of the parameter count."""
    if isinstance(optimizer, str):
        return {"lbfgs": 2 * _LBFGS_MEMORY + 1, "adam": 2, "sgd": 0}.get(optimizer, 2)
    if params is not None:  # an optax transformation: its state, exactly, by shape inference
        import jax

        try:
            state = jax.eval_shape(optimizer.init, params)
            return sum(x.size for x in jax.tree_util.tree_leaves(state)) / max(n_params, 1)
        except Exception:  # an optimiser that cannot be traced abstractly: assume L-BFGS-sized
            pass
    return 2 * _LBFGS_MEMORY + 1


def fit_estimate(
    L: int,
    q: int,
    M: int,
    *,
    model: Any = None,
    n_params: int | None = None,
    kind: str = "plm",
    optimizer: Any = "lbfgs",
    batch_size: int | None = None,
    dtype: Any = None,
    n_devices: int = 1,
    **shape: int,
) -> MemoryEstimate:
    r"""Peak memory of a pseudo-likelihood / MLM fit (module docstring for the formula).

    Args:
        L, q, M: sites, colours and number of training sequences.
        model: the model to train (its parameter count, heads and kind are read from it);
            else `kind` ("plm", "attention", "transformer") with `n_params` / `n_heads`.
        optimizer: "lbfgs", "adam", "sgd" or an optax transformation (its state is measured
            by shape inference when `model` is given).
        batch_size: rows per step (None: full batch, M).
        dtype: parameter dtype (default: JAX's default float).
        n_devices: devices of a data mesh: the estimate is the total over them. Replicated
            parameters and loop state count once per device; the L-BFGS memory is split over
            them, so it counts once in all.
        **shape: without `model`, its sizes: ``n_heads`` (1), and for a Transformer
            ``d_model``, ``d_mlp``, ``n_layers`` (0).
    """
    unknown = sorted(set(shape) - {"n_heads", "d_model", "d_mlp", "n_layers"})
    if unknown:
        raise TypeError(f"unknown model size(s): {', '.join(unknown)}")
    n_heads, d_model = int(shape.get("n_heads", 1)), int(shape.get("d_model", 0))
    d_mlp, n_layers = int(shape.get("d_mlp", 0)), int(shape.get("n_layers", 0))
    for name, v in (("L", L), ("q", q), ("M", M)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    params = None
    if model is not None:
        import equinox as eqx

        kind = {
            "PottsModel": "plm",
            "DenseConditionals": "plm",
            "FactoredAttention": "attention",
            "Transformer": "transformer",
        }.get(type(model).__name__, "other")
        n_heads = int(getattr(model, "n_heads", 1) or 1)
        d_model, n_layers = int(getattr(model, "d_model", 0) or 0), int(getattr(model, "n_layers", 0) or 0)
        d_mlp = int(getattr(model, "d_mlp", 0) or 0)
        n_params = _count_params(model)
        params = eqx.filter(model, eqx.is_inexact_array)
        leaves = [x for x in __import__("jax").tree_util.tree_leaves(params)]
        if dtype is None and leaves:
            dtype = leaves[0].dtype
    if n_params is None:
        if kind == "plm":
            n_params = L * q + L * L * q * q
        elif kind == "attention":
            n_params = n_heads * (L * L + q * q) + L * q
        else:
            raise ValueError(f"give n_params (or model) for a fit of kind {kind!r}")
    f = _itemsize(dtype)
    D = max(int(n_devices), 1)
    rows = M if batch_size is None else min(int(batch_size), M)
    slots = _optimizer_slots(optimizer, n_params, params)
    opt_bytes = 2 * slots * n_params * f
    if optimizer == "lbfgs" or (not isinstance(optimizer, str) and slots > 4):
        # The memory is split over the devices, so its total is that of one device's copy; the
        # gradient in the state is replicated (D - 1 more copies, entering and leaving a chunk).
        opt_bytes = opt_bytes + 2 * n_params * f * (D - 1)
    else:
        opt_bytes *= D
    dense = kind == "plm" or (kind == "attention" and n_heads >= _COUPLING_ROUTE_HEADS)
    if dense:
        evaluation = 6 * block_size(L * q, -(-rows // D)) * L * q * f
        if kind == "attention":  # couplings built from the heads, their matrix form and gradient
            evaluation += 4 * L * L * q * q * f
    else:
        evaluation = 8 * rows * L * q * max(n_heads, 1) * f
        if kind == "transformer":
            evaluation += rows * L * L * (4 * d_model + d_mlp) * max(n_layers, 1) * f
    parts = {
        "parameters and gradients": (_PARAM_COPIES + _PARAM_COPIES_PER_DEVICE * (D - 1)) * n_params * f,
        "optimizer state": int(opt_bytes),
        "one loss evaluation": int(evaluation * D),
        "sequences": 3 * M * L * 4,
        "runtime": RUNTIME_BYTES,
    }
    return MemoryEstimate({k: int(v) for k, v in parts.items()})


def sample_estimate(
    L: int,
    q: int,
    n_chains: int,
    n_samples: int,
    *,
    dense: bool = True,
    dtype: Any = None,
    n_devices: int = 1,
) -> MemoryEstimate:
    r"""Peak memory of `jaxpotts.sample` (module docstring): model, chains, recorded samples."""
    for name, v in (("L", L), ("q", q), ("n_chains", n_chains), ("n_samples", n_samples)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    f = _itemsize(dtype)
    n_model = L * q + (L * L * q * q if dense else L * L + q * q)
    parts = {
        "model": n_model * f * max(int(n_devices), 1),
        "chains": n_chains * L * 4 + 2 * n_chains * L * q * f,
        "recorded samples": 2 * n_chains * n_samples * L * 4,
        "energies": 2 * n_chains * n_samples * f,
        "runtime": RUNTIME_BYTES,
    }
    return MemoryEstimate({k: int(v) for k, v in parts.items()})


def validation_estimate(L: int, q: int, n_triplets: int) -> MemoryEstimate:
    r"""Peak memory of `jaxpotts.generative.validate`'s statistics (module docstring)."""
    for name, v in (("L", L), ("q", q), ("n_triplets", n_triplets)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    K = L * q
    parts = {
        "two-site statistics": 14 * K * K * 4,
        "three-site entries": 16 * n_triplets * 4 + 3 * 4 * 2**22,
        "runtime": RUNTIME_BYTES,
    }
    return MemoryEstimate({k: int(v) for k, v in parts.items()})


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


_CGROUP_ROOT, _PROC_CGROUP = "/sys/fs/cgroup", "/proc/self/cgroup"


def _cgroup_available() -> int | None:
    """The tightest (limit - usage) over this process's memory cgroup and its parents (v2, else
    v1), or None without a limit."""
    root = Path(_CGROUP_ROOT)
    v2 = v1 = None
    try:
        for line in Path(_PROC_CGROUP).read_text().splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3 and parts[1] == "":
                v2 = parts[2].strip("/")
            elif len(parts) == 3 and "memory" in parts[1].split(","):
                v1 = parts[2].strip("/")
    except OSError:
        pass

    def walk(base: Path, rel: str | None):
        rel_parts = [p for p in (rel or "").split("/") if p]
        for k in range(len(rel_parts), -1, -1):  # own group first, then its parents
            yield base.joinpath(*rel_parts[:k])

    best = None
    for group in walk(root, v2):
        limit = _read_int(group / "memory.max")
        if limit is not None:
            free = max(limit - (_read_int(group / "memory.current") or 0), 0)
            best = free if best is None else min(best, free)
    if best is None:
        for group in walk(root / "memory", v1):
            limit = _read_int(group / "memory.limit_in_bytes")
            if limit is not None and limit < 2**60:  # v1 writes a huge number for "no limit"
                free = max(limit - (_read_int(group / "memory.usage_in_bytes") or 0), 0)
                best = free if best is None else min(best, free)
    return best


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # other POSIX systems: free physical pages
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _device_available() -> int | None:
    """Free memory of the first accelerator (GPU/TPU), from its allocator statistics."""
    import jax

    if jax.default_backend() == "cpu":
        return None
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # pragma: no cover - backends without statistics
        return None
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def available_memory() -> tuple[int | None, str]:
    """(bytes, where from) that a run can still use, or (None, reason) when unknown.

    On CPU: the smaller of the memory cgroup's limit minus its usage (cgroup v2
    ``memory.max - memory.current``, or v1 ``memory.limit_in_bytes - memory.usage_in_bytes``;
    containers and batch schedulers set these) and the kernel's ``MemAvailable`` in
    /proc/meminfo (free memory plus reclaimable caches); ``os.sysconf`` free pages elsewhere.
    On an accelerator: its allocator's ``bytes_limit - bytes_in_use``.
    """
    device = _device_available()
    if device is not None:
        return device, "free accelerator memory"
    cg, mi = _cgroup_available(), _meminfo_available()
    if cg is not None and (mi is None or cg <= mi):
        return cg, "memory cgroup limit minus usage"
    if mi is not None:
        return mi, "MemAvailable in /proc/meminfo" if Path("/proc/meminfo").exists() else "free physical memory"
    return None, "unknown on this system"


def memory_budget(max_memory: Any = None) -> tuple[float | None, str]:
    """(bytes, where from) of the budget `check_memory` holds a run to: `available_memory()` for
    None, else `parse_size(max_memory)` (math.inf for "unlimited"); None when unknown."""
    if max_memory is None:
        return available_memory()
    return parse_size(max_memory), "max_memory"


def check_memory(estimate: MemoryEstimate | int | float, what: str, max_memory: Any = None) -> None:
    """Refuse a run whose estimated peak memory exceeds the budget.

    Args:
        estimate: a `MemoryEstimate` or bytes.
        what: the run, for the message (e.g. "fit of PottsModel (L=1000, q=21, M=5000)").
        max_memory: the budget: None (default) = `available_memory()`; a size in bytes or a
            string such as "64G" (`parse_size`); "unlimited" or math.inf skips the check.

    Raises:
        MemoryLimitError: naming the estimate, the budget and where it comes from, and the override.
    """
    total = estimate.total if isinstance(estimate, MemoryEstimate) else float(estimate)
    budget, source = memory_budget(max_memory)
    if budget is None or math.isinf(budget):
        return
    if total > budget:
        detail = f" = {estimate}" if isinstance(estimate, MemoryEstimate) else ""
        raise MemoryLimitError(
            f"{what} needs about {format_bytes(total)} of memory (estimate{detail}) but {format_bytes(budget)} "
            f"are available ({source}); reduce the problem (fewer sequences/chains/samples, a batch size, "
            "a smaller L or q) or override with max_memory= (command line: --max-memory SIZE, or "
            "--max-memory unlimited)"
        )
