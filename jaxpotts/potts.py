r"""Potts models: dense and factored couplings, energies, conditionals and gauges.

Conventions (see docs/conventions.md). A sequence is $s = (s_1..s_L)$ with colours
$s_i \in \{0..q-1\}$; energy and Boltzmann distribution

$$E(s) = -\sum_i h_i(s_i) - \sum_{i<j} J_{ij}(s_i, s_j), \qquad p(s) = e^{-\beta E(s)} / Z.$$

A *joint* model has $J_{ij}(a,b) = J_{ji}(b,a)$ and $J_{ii} = 0$. A model with non-symmetric
couplings is a set of $L$ conditionals (what asymmetric plmDCA and attention layers produce):
its conditionals and pseudo-likelihood are defined, its energy is not.

The *factored* (generalized) model has $J_{ij}(a,b) = J_{ij}\,U(a,b)$; its energy and
conditionals cost $O(L^2 + Lq)$ and $O(L^2 q + L q^2)$ and never build the $(L,L,q,q)$ tensor.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray, Scalar, ScalarLike

from ._precision import einsum, matmul
from ._validation import as_float_array, check_finite, check_ndim, check_sequences, concrete, symmetry_tolerance

__all__ = [
    "PottsModel",
    "FactoredPotts",
    "AnyPotts",
    "energy",
    "local_fields",
    "conditional_logits",
    "to_dense",
    "zero_sum_gauge",
    "double_centre",
    "symmetrize_couplings",
    "joint_model",
    "is_joint",
    "check_joint",
    "random_fields",
    "gaussian_couplings",
    "erdos_renyi_couplings",
    "random_colour_matrix",
    "potts_colour_matrix",
    "random_dense_potts",
    "random_factored_potts",
]


def _check_zero_diagonal(J, name: str) -> None:
    value = concrete(J)
    if value is None:
        return
    L = value.shape[0]
    diag = value[np.arange(L), np.arange(L)]
    if np.any(diag != 0):
        worst = float(np.max(np.abs(diag)))
        raise ValueError(f"{name} must have zero diagonal (no self-coupling J_ii); found |J_ii| up to {worst:g}")


class PottsModel(eqx.Module):
    r"""Potts model with dense couplings $J_{ij}(a,b)$.

    Attributes:
        fields: $h_i(a)$, shape (L, q).
        couplings: $J_{ij}(a,b)$, shape (L, L, q, q), with zero diagonal blocks $J_{ii} = 0$.
            Symmetric ($J_{ij}(a,b) = J_{ji}(b,a)$) for a joint model; non-symmetric couplings
            describe L conditionals and are refused by `energy`, sampling and enumeration.

    Construction checks shapes, finiteness and the zero diagonal (value checks are skipped
    for traced arrays inside jit/vmap).
    """

    fields: Float[Array, "L q"]
    couplings: Float[Array, "L L q q"]

    def __init__(self, fields: Float[Array, "L q"], couplings: Float[Array, "L L q q"]):
        fields = as_float_array(fields, "fields")
        couplings = as_float_array(couplings, "couplings")
        check_ndim(fields, 2, "fields", "(L, q)")
        check_ndim(couplings, 4, "couplings", "(L, L, q, q)")
        L, q = fields.shape
        if couplings.shape != (L, L, q, q):
            raise ValueError(
                f"couplings must have shape (L, L, q, q) = {(L, L, q, q)} to match fields {(L, q)}, "
                f"got {tuple(couplings.shape)}"
            )
        if q < 2:
            raise ValueError(f"a Potts model needs q >= 2 colours, got q={q}")
        check_finite(fields, "fields")
        check_finite(couplings, "couplings")
        _check_zero_diagonal(couplings, "couplings")
        dtype = jnp.result_type(fields, couplings)
        self.fields = fields.astype(dtype)
        self.couplings = couplings.astype(dtype)

    @property
    def L(self) -> int:
        return self.fields.shape[-2]

    @property
    def q(self) -> int:
        return self.fields.shape[-1]


class FactoredPotts(eqx.Module):
    r"""Generalized Potts model with factored couplings $J_{ij}(a,b) = J_{ij}\,U(a,b)$.

    Attributes:
        fields: $h_i(a)$, shape (L, q).
        J: site-site interactions $J_{ij}$, shape (L, L), zero diagonal.
        U: colour-colour interactions $U(a,b)$, shape (q, q).

    The model is joint (has an energy) when J and U are both symmetric.
    """

    fields: Float[Array, "L q"]
    J: Float[Array, "L L"]
    U: Float[Array, "q q"]

    def __init__(self, fields: Float[Array, "L q"], J: Float[Array, "L L"], U: Float[Array, "q q"]):
        fields = as_float_array(fields, "fields")
        J = as_float_array(J, "J")
        U = as_float_array(U, "U")
        check_ndim(fields, 2, "fields", "(L, q)")
        check_ndim(J, 2, "J", "(L, L)")
        check_ndim(U, 2, "U", "(q, q)")
        L, q = fields.shape
        if J.shape != (L, L):
            raise ValueError(f"J must have shape (L, L) = {(L, L)} to match fields {(L, q)}, got {tuple(J.shape)}")
        if U.shape != (q, q):
            raise ValueError(f"U must have shape (q, q) = {(q, q)} to match fields {(L, q)}, got {tuple(U.shape)}")
        if q < 2:
            raise ValueError(f"a Potts model needs q >= 2 colours, got q={q}")
        for name, x in (("fields", fields), ("J", J), ("U", U)):
            check_finite(x, name)
        _check_zero_diagonal(J, "J")
        dtype = jnp.result_type(fields, J, U)
        self.fields = fields.astype(dtype)
        self.J = J.astype(dtype)
        self.U = U.astype(dtype)

    @property
    def L(self) -> int:
        return self.fields.shape[-2]

    @property
    def q(self) -> int:
        return self.fields.shape[-1]

    def to_dense(self) -> PottsModel:
        """The equivalent dense model (materialises the (L, L, q, q) couplings)."""
        return to_dense(self)


AnyPotts = PottsModel | FactoredPotts


def _require_model(model) -> None:
    if not isinstance(model, (PottsModel, FactoredPotts)):
        raise TypeError(f"expected a PottsModel or FactoredPotts, got {type(model).__name__}")


# ----------------------------------------------------------------------------- symmetry


def is_joint(model: AnyPotts) -> bool:
    r"""Whether the couplings define a joint distribution: $J_{ij}(a,b) = J_{ji}(b,a)$.

    Equality is up to rounding at the parameters' precision. Needs concrete parameters.
    """
    _require_model(model)
    if isinstance(model, PottsModel):
        C = concrete(model.couplings)
        if C is None:
            raise TypeError("is_joint needs concrete parameters (it cannot run inside jit)")
        return bool(np.all(np.abs(C - C.transpose(1, 0, 3, 2)) <= symmetry_tolerance(C)))
    J, U = concrete(model.J), concrete(model.U)
    if J is None or U is None:
        raise TypeError("is_joint needs concrete parameters (it cannot run inside jit)")
    if not np.any(J) or not np.any(U):
        return True
    return bool(np.all(np.abs(J - J.T) <= symmetry_tolerance(J)) and np.all(np.abs(U - U.T) <= symmetry_tolerance(U)))


def check_joint(model: AnyPotts, what: str) -> None:
    """Raise a clear error if `model` is a set of conditionals rather than a joint model.

    Skipped (returns silently) when the parameters are traced.
    """
    _require_model(model)
    leaves = jax.tree_util.tree_leaves(model)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        return
    if not is_joint(model):
        if isinstance(model, PottsModel):
            detail = "couplings are not symmetric: J_ij(a,b) != J_ji(b,a)"
        else:
            detail = "J or U is not symmetric, so J_ij U(a,b) != J_ji U(b,a)"
        raise ValueError(
            f"{what} needs a joint model, but the {detail}. Non-symmetric couplings define L "
            "conditionals only; symmetrise them first, e.g. (J_ij(a,b) + J_ji(b,a)) / 2."
        )


# ----------------------------------------------------------------------------- numerics


def _check_sequence(model: AnyPotts, s) -> Int[Array, " L"]:
    """One sequence of length L with colours in 0..q-1, as int32.

    Without this, out-of-range colours are silently clamped by JAX indexing (wrong energies)
    and a batch (M, L) with M == L broadcasts into a meaningless scalar.
    """
    s = check_sequences(s, model.L, model.q, "s")
    if s.ndim != 1:
        raise ValueError(
            f"s must be one sequence of shape (L,) = ({model.L},), got shape {tuple(s.shape)}; use jax.vmap for batches"
        )
    return s


def _one_hot(s: Int[Array, " L"], q: int, dtype) -> Float[Array, "L q"]:
    return jax.nn.one_hot(s, q, dtype=dtype)


def local_fields(model: AnyPotts, s: Int[Array, " L"]) -> Float[Array, "L q"]:
    r"""Local fields $\phi_i(a) = h_i(a) + \sum_{j \ne i} J_{ij}(a, s_j)$ for every site i.

    They are the unscaled conditional logits: $p(s_i = a \mid s_{-i}) \propto e^{\beta\phi_i(a)}$.
    Dense: a contraction with the one-hot sequence (a GEMM once vmapped over sequences).
    Factored: $\phi = h + (J\,X)\,U^\top$ with $X$ the one-hot sequence, $O(L^2 q + L q^2)$.
    Defined for non-symmetric couplings too (each row i is the conditional of site i).
    """
    _require_model(model)
    s = _check_sequence(model, s)
    x = _one_hot(s, model.q, model.fields.dtype)
    if isinstance(model, PottsModel):
        return model.fields + einsum("ijab,jb->ia", model.couplings, x)
    return model.fields + matmul(matmul(model.J, x), model.U.T)


def conditional_logits(model: AnyPotts, s: Int[Array, " L"], beta: ScalarLike = 1.0) -> Float[Array, "L q"]:
    r"""Logits of all L conditionals at once: $\beta\,[h_i(a) + \sum_{j\ne i} J_{ij}(a, s_j)]$.

    `jax.nn.log_softmax` of row i is $\log p(s_i = a \mid s_{-i})$. The row for site i does
    not depend on $s_i$ (the diagonal blocks are zero).
    """
    return beta * local_fields(model, s)


def _pair_energy_terms(model: AnyPotts, s: Int[Array, " L"]) -> Float[Array, "L L"]:
    """Matrix of J_ij(s_i, s_j), by gathering (no one-hot, O(L^2))."""
    if isinstance(model, PottsModel):
        idx = jnp.arange(model.L)
        return model.couplings[idx[:, None], idx[None, :], s[:, None], s[None, :]]
    return model.J * model.U[s[:, None], s[None, :]]


def energy(model: AnyPotts, s: Int[Array, " L"]) -> Scalar:
    r"""Energy $E(s) = -\sum_i h_i(s_i) - \sum_{i<j} J_{ij}(s_i, s_j)$ of one sequence.

    Refuses (ValueError) non-symmetric couplings when called on concrete parameters; inside
    jit the check is skipped, so validate models before tracing. Use `jax.vmap` for batches.
    Cost $O(L^2)$ for both dense and factored models.
    """
    check_joint(model, "energy")
    s = _check_sequence(model, s)
    L = model.L
    fields = model.fields[jnp.arange(L), s]
    pairs = _pair_energy_terms(model, s)
    # J_ii = 0, and symmetry makes the full double sum twice the sum over i < j.
    return -(jnp.sum(fields) + 0.5 * jnp.sum(pairs))


def to_dense(model: AnyPotts) -> PottsModel:
    r"""Dense couplings $J_{ij}(a,b) = J_{ij}\,U(a,b)$ of a factored model (identity on dense)."""
    _require_model(model)
    if isinstance(model, PottsModel):
        return model
    couplings = model.J[:, :, None, None] * model.U[None, None, :, :]
    return PottsModel(model.fields, couplings)


def zero_sum_gauge(model: AnyPotts) -> AnyPotts:
    r"""The equivalent model in the zero-sum (Ising) gauge.

    $J'_{ij}(a,b) = J_{ij}(a,b) - J_{ij}(\cdot,b) - J_{ij}(a,\cdot) + J_{ij}(\cdot,\cdot)$ and
    $h'_i(a) = h_i(a) + \sum_{j\ne i} J_{ij}(a,\cdot)$, then centred over a; a dot is the mean
    over that colour. Every conditional $p(s_i \mid s_{-i})$ is unchanged (so are energy
    differences of a joint model): shifts of $J_{ij}(a,b)$ independent of $a$ cancel in the
    softmax of site i, and shifts independent of $b$ move into $h_i$. A factored model stays
    factored: $U' = U - U(\cdot,b) - U(a,\cdot) + U(\cdot,\cdot)$.
    """
    _require_model(model)
    if isinstance(model, PottsModel):
        C = model.couplings
        row = C.mean(axis=3, keepdims=True)  # J_ij(a, .)
        h = model.fields + jnp.sum(row[..., 0] - C.mean(axis=(2, 3))[..., None], axis=1)
        return PottsModel(h - h.mean(axis=1, keepdims=True), double_centre(C))
    U = model.U
    shift = U.mean(axis=1) - U.mean()  # U(a, .) - U(., .)
    h = model.fields + jnp.sum(model.J, axis=1)[:, None] * shift[None, :]
    return FactoredPotts(h - h.mean(axis=1, keepdims=True), model.J, double_centre(U))


def double_centre(x: Float[Array, "... q q"]) -> Float[Array, "... q q"]:
    r"""The zero-sum gauge of colour-colour blocks over the last two axes:
    $x'(a,b) = x(a,b) - x(\cdot,b) - x(a,\cdot) + x(\cdot,\cdot)$ (a dot is the mean over that
    colour), so rows and columns of every block sum to zero. numpy in, numpy out; jax in, jax out."""
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"colour blocks must be square (..., q, q), got shape {tuple(x.shape)}")
    return x - x.mean(axis=-1, keepdims=True) - x.mean(axis=-2, keepdims=True) + x.mean(axis=(-2, -1), keepdims=True)


def symmetrize_couplings(C: Float[Array, "L L q q"]) -> Float[Array, "L L q q"]:
    r"""$\tfrac12[J_{ij}(a,b) + J_{ji}(b,a)]$: the joint model's couplings closest to a set of L
    conditionals (asymmetric plmDCA, an attention layer)."""
    return 0.5 * (C + C.transpose(1, 0, 3, 2))


def joint_model(model: Any) -> AnyPotts:
    """A model with an energy: joint Potts models unchanged, L conditionals (non-symmetric
    couplings) symmetrised with `symmetrize_couplings`, layers with `to_potts` (factored
    attention) through ``to_potts(symmetrize=True)``."""
    if not isinstance(model, (PottsModel, FactoredPotts)):
        if not hasattr(model, "to_potts"):
            raise TypeError(
                f"{type(model).__name__} has no Potts energy (give a PottsModel, FactoredPotts or a "
                "layer with to_potts)"
            )
        return model.to_potts(symmetrize=True)
    if is_joint(model):
        return model
    dense = to_dense(model)
    return PottsModel(dense.fields, symmetrize_couplings(dense.couplings))


# ----------------------------------------------------------------------------- constructors


def random_fields(key: PRNGKeyArray, L: int, q: int, *, scale: float = 1.0) -> Float[Array, "L q"]:
    r"""Gaussian fields $h_i(a) \sim \mathcal N(0, \text{scale}^2)$."""
    return scale * jax.random.normal(key, (L, q))


def gaussian_couplings(key: PRNGKeyArray, L: int, *, scale: float = 1.0) -> Float[Array, "L L"]:
    r"""Sherrington-Kirkpatrick-like site couplings: symmetric, zero diagonal,
    $J_{ij} \sim \mathcal N(0, \text{scale}^2 / L)$ for $i<j$ (so local fields stay O(1) as L grows)."""
    _check_size(L, "L", 2)
    g = jax.random.normal(key, (L, L)) * (scale / np.sqrt(L))
    upper = jnp.triu(g, k=1)
    return upper + upper.T


def erdos_renyi_couplings(
    key: PRNGKeyArray, L: int, *, mean_degree: float = 3.0, scale: float = 1.0
) -> Float[Array, "L L"]:
    r"""Sparse symmetric site couplings on an Erdos-Renyi graph.

    Each pair $i<j$ is an edge with probability $c/(L-1)$ ($c$ = mean_degree); edge weights are
    $\mathcal N(0, \text{scale}^2)$, other entries zero; zero diagonal.
    """
    _check_size(L, "L", 2)
    if not 0 <= mean_degree <= L - 1:
        raise ValueError(f"mean_degree must be in [0, L-1] = [0, {L - 1}], got {mean_degree}")
    k_edge, k_weight = jax.random.split(key)
    edges = jax.random.uniform(k_edge, (L, L)) < mean_degree / (L - 1)
    weights = scale * jax.random.normal(k_weight, (L, L))
    upper = jnp.triu(jnp.where(edges, weights, 0.0), k=1)
    return upper + upper.T


def random_colour_matrix(key: PRNGKeyArray, q: int, *, scale: float = 1.0) -> Float[Array, "q q"]:
    r"""Random symmetric colour interaction $U = \text{scale}\,(G + G^\top)/\sqrt 2$, $G_{ab} \sim \mathcal N(0,1)$."""
    _check_size(q, "q", 2)
    g = jax.random.normal(key, (q, q))
    return scale * (g + g.T) / np.sqrt(2.0)


def potts_colour_matrix(q: int) -> Float[Array, "q q"]:
    r"""The standard Potts colour interaction $U(a,b) = \delta_{ab}$."""
    _check_size(q, "q", 2)
    return jnp.eye(q)


def random_dense_potts(
    key: PRNGKeyArray, L: int, q: int, *, coupling_scale: float = 1.0, field_scale: float = 0.5
) -> PottsModel:
    r"""Dense joint model with Gaussian couplings $J_{ij}(a,b) \sim \mathcal N(0, \text{coupling\_scale}^2/L)$
    (symmetrised so that $J_{ij}(a,b) = J_{ji}(b,a)$, zero diagonal) and Gaussian fields."""
    _check_size(L, "L", 2)
    _check_size(q, "q", 2)
    k_h, k_J = jax.random.split(key)
    g = jax.random.normal(k_J, (L, L, q, q)) * (coupling_scale / np.sqrt(L))
    mask = jnp.triu(jnp.ones((L, L), dtype=bool), k=1)[:, :, None, None]
    upper = jnp.where(mask, g, 0.0)
    couplings = upper + upper.transpose(1, 0, 3, 2)
    return PottsModel(random_fields(k_h, L, q, scale=field_scale), couplings)


def random_factored_potts(
    key: PRNGKeyArray,
    L: int,
    q: int,
    *,
    graph: str = "gaussian",
    colours: str = "random",
    coupling_scale: float = 1.0,
    colour_scale: float = 1.0,
    field_scale: float = 0.5,
    mean_degree: float = 3.0,
) -> FactoredPotts:
    r"""Random generalized Potts model $J_{ij}\,U(a,b)$ as used in the experiments.

    Args:
        graph: "gaussian" (SK-like dense J, `gaussian_couplings`) or "erdos_renyi" (sparse J).
        colours: "random" (symmetric Gaussian U, `random_colour_matrix`) or "potts" (U = I).
    """
    _check_size(L, "L", 2)
    _check_size(q, "q", 2)
    k_h, k_J, k_U = jax.random.split(key, 3)
    if graph == "gaussian":
        J = gaussian_couplings(k_J, L, scale=coupling_scale)
    elif graph == "erdos_renyi":
        J = erdos_renyi_couplings(k_J, L, mean_degree=mean_degree, scale=coupling_scale)
    else:
        raise ValueError(f"graph must be 'gaussian' or 'erdos_renyi', got {graph!r}")
    if colours == "random":
        U = random_colour_matrix(k_U, q, scale=colour_scale)
    elif colours == "potts":
        U = colour_scale * potts_colour_matrix(q)
    else:
        raise ValueError(f"colours must be 'random' or 'potts', got {colours!r}")
    return FactoredPotts(random_fields(k_h, L, q, scale=field_scale), J, U)


def _check_size(n, name: str, minimum: int) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
