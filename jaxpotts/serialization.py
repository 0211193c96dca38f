r"""Saving and loading models and training checkpoints.

A file holds the arrays of a pytree (`eqx.tree_serialise_leaves`); a JSON beside it
(``path + '.json'``) holds what rebuilds the structure: the model's class and constructor
arguments (`save_model`) or the training loop's metadata (`save_checkpoint`). Both are written
atomically (a temporary file, then a rename), so an interrupted write never leaves a half file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from ._files import read_checkpoint_meta, write_checkpoint_files
from .potts import FactoredPotts, PottsModel

__all__ = ["save_model", "load_model", "save_checkpoint", "load_checkpoint", "import_potts"]


def save_checkpoint(path: str | os.PathLike, tree: Any, metadata: dict | None = None) -> None:
    """Save the arrays of a pytree with `eqx.tree_serialise_leaves` to `path` and a JSON of
    `metadata` to `path + '.json'` (both written atomically, `jaxpotts._files`; the JSON records
    the SHA-256 of the array file, so a truncated or mismatched pair is refused on loading)."""
    # Through a file handle: given a path, equinox replaces any suffix other than .eqx.
    write_checkpoint_files(path, lambda fh: eqx.tree_serialise_leaves(fh, tree), metadata or {})


def load_checkpoint(path: str | os.PathLike, like: Any) -> tuple[Any, dict]:
    """Load what `save_checkpoint` wrote: arrays into the structure of `like` (a pytree of the
    same structure, shapes and dtypes, e.g. a freshly initialised model), and the metadata."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    meta = read_checkpoint_meta(path)
    try:
        with open(path, "rb") as fh:
            tree = eqx.tree_deserialise_leaves(fh, like)
    except Exception as err:  # shape/dtype/structure mismatch
        raise ValueError(f"checkpoint {path} does not match the structure of `like`: {err}") from err
    return tree, meta


def _model_spec(model: Any) -> dict:
    """Constructor arguments that rebuild a template of `model` (for `load_model`)."""
    from .attention import FactoredAttention, Transformer

    dtype = str(jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))[0].dtype)
    if isinstance(model, FactoredAttention):
        return dict(
            cls="FactoredAttention",
            L=model.L,
            q=model.q,
            n_heads=model.n_heads,
            head_dim=model.head_dim or 1,
            softmax=model.softmax,
            fields=model.fields is not None,
            dtype=dtype,
        )
    if isinstance(model, Transformer):
        return dict(
            cls="Transformer",
            L=model.L,
            q=model.q,
            n_layers=model.n_layers,
            d_model=model.d_model,
            n_heads=model.n_heads,
            d_mlp=model.d_mlp,
            dtype=dtype,
        )
    if isinstance(model, PottsModel):
        return dict(cls="PottsModel", L=model.L, q=model.q, dtype=dtype)
    if isinstance(model, FactoredPotts):
        return dict(cls="FactoredPotts", L=model.L, q=model.q, dtype=dtype)
    return dict(cls=type(model).__name__)


def _template(spec: dict) -> Any:
    from .attention import FactoredAttention, Transformer

    spec = dict(spec)
    cls = spec.pop("cls", None)
    dtype = jnp.dtype(spec.pop("dtype", "float32"))
    key = jax.random.PRNGKey(0)
    if cls == "FactoredAttention":
        return FactoredAttention(
            spec["L"],
            spec["q"],
            spec["n_heads"],
            spec["head_dim"],
            key=key,
            softmax=spec["softmax"],
            fields=spec["fields"],
            dtype=dtype,
        )
    if cls == "Transformer":
        return Transformer(
            spec["L"],
            spec["q"],
            spec["n_layers"],
            key=key,
            d_model=spec["d_model"],
            n_heads=spec["n_heads"],
            d_mlp=spec["d_mlp"],
            dtype=dtype,
        )
    if cls == "PottsModel":
        L, q = spec["L"], spec["q"]
        return PottsModel(jnp.zeros((L, q), dtype), jnp.zeros((L, L, q, q), dtype))
    if cls == "FactoredPotts":
        L, q = spec["L"], spec["q"]
        return FactoredPotts(jnp.zeros((L, q), dtype), jnp.zeros((L, L), dtype), jnp.zeros((q, q), dtype))
    raise ValueError(f"cannot rebuild a model of class {cls!r} from its metadata; pass `like=`")


def save_model(path: str | os.PathLike, model: Any, **hyperparameters: Any) -> None:
    """Save a model (`eqx.tree_serialise_leaves`) plus a JSON with its constructor arguments
    and any extra JSON-serialisable `hyperparameters` (e.g. the training settings)."""
    save_checkpoint(path, model, {"model": _model_spec(model), "hyperparameters": hyperparameters})


def load_model(path: str | os.PathLike, like: Any = None) -> tuple[Any, dict]:
    """Load a model saved by `save_model`; returns (model, hyperparameters). Without `like`,
    the template is rebuilt from the stored constructor arguments (package models only)."""
    meta_path = Path(str(path) + ".json")
    meta = read_checkpoint_meta(path)
    if like is None:
        if "model" not in meta:
            raise ValueError(f"{meta_path} has no model description; pass `like=` (a model of the same shape)")
        like = _template(meta["model"])
    model, meta = load_checkpoint(path, like)
    return model, meta.get("hyperparameters", {})


def import_potts(
    fields: Float[np.ndarray, "L q"],
    couplings: Float[np.ndarray, "L L q q"],
    symbols: str,
    alphabet: Any,
    *,
    dtype: Any = None,
) -> PottsModel:
    r"""A `PottsModel` from another tool's parameter arrays (e.g. adabmDCA's ``bias`` and
    ``coupling_matrix`` moved to ``[i, j, a, b]``), in the colour order of `alphabet`
    (a `jaxpotts.msa.Alphabet`).

    The arrays follow the energy convention
    $E(s) = -\sum_i h_i(s_i) - \tfrac12 \sum_{i, j} J_{ij}(s_i, s_j)$ over all ordered pairs,
    the diagonal blocks $i = j$ included (adabmDCA's `compute_energy`), with colour ``k`` the
    letter ``symbols[k]``. The result has the same energy for every sequence under
    `jaxpotts.potts.energy`: colours are permuted to `alphabet.symbols`
    ($h'_i(a) = h_i(\pi(a))$, $J'_{ij}(a, b) = J_{ij}(\pi(a), \pi(b))$ with
    $\pi(a)$ = the position of ``alphabet.symbols[a]`` in `symbols`), the diagonal blocks
    are folded into the fields ($h'_i(a) \mathrel{+}= \tfrac12 J_{ii}(a, a)$, the only part of
    $J_{ii}$ a one-hot sequence sees) and set to zero, and the couplings are symmetrised,
    $\tfrac12[J_{ij}(a,b) + J_{ji}(b,a)]$, which leaves every energy unchanged. For a tool whose
    energy sums $i < j$ only, pass $J + J^\top$. `symbols` and the alphabet must hold the same
    letters. Float64 arithmetic, then `dtype` (default: JAX's default float).
    """
    h = np.asarray(fields, np.float64)
    J = np.asarray(couplings, np.float64)
    if h.ndim != 2 or J.shape != (h.shape[0], h.shape[0], h.shape[1], h.shape[1]):
        raise ValueError(f"fields must be (L, q) and couplings (L, L, q, q); got {h.shape} and {J.shape}")
    target = getattr(alphabet, "symbols", None)
    if not isinstance(target, str):
        raise ValueError(f"alphabet must be a jaxpotts.msa.Alphabet, got {alphabet!r}")
    if len(symbols) != h.shape[1] or len(set(symbols)) != len(symbols) or set(symbols) != set(target):
        raise ValueError(
            f"symbols {symbols!r} must be q = {h.shape[1]} distinct letters, the letters of the alphabet {target!r}"
        )
    if not (np.isfinite(h).all() and np.isfinite(J).all()):
        raise ValueError("fields and couplings must be finite")
    perm = np.array([symbols.index(c) for c in target])
    h, J = h[:, perm], J[:, :, perm][:, :, :, perm]
    L = h.shape[0]
    idx = np.arange(L)
    h = h + 0.5 * np.diagonal(J[idx, idx], axis1=-2, axis2=-1)
    J[idx, idx] = 0.0
    J = 0.5 * (J + J.transpose(1, 0, 3, 2))
    dtype = jnp.result_type(float) if dtype is None else dtype
    return PottsModel(jnp.asarray(h, dtype), jnp.asarray(J, dtype))
