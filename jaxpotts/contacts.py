r"""Contact prediction from couplings: gauge, Frobenius norm, APC, ranking and precision.

Scores (the plmDCA convention)
    1. Symmetrise: $\bar J_{ij}(a,b) = \tfrac12\,[J_{ij}(a,b) + J_{ji}(b,a)]$ (a no-op on a
       joint model; asymmetric plmDCA and attention layers give non-symmetric couplings).
    2. Zero-sum gauge over all q colours, gap included:
       $J'_{ij}(a,b) = \bar J_{ij}(a,b) - \bar J_{ij}(\cdot,b) - \bar J_{ij}(a,\cdot) + \bar J_{ij}(\cdot,\cdot)$
       (a dot is the mean over that colour). This makes the scores gauge invariant: any
       $\bar J_{ij}(a,b) + f_{ij}(a) + g_{ij}(b)$ gives the same $J'$.
    3. Frobenius norm over the selected colours: by default the q - 1 non-gap colours (the 20
       amino acids), $F_{ij} = (\sum_{a,b \ne \mathrm{gap}} J'_{ij}(a,b)^2)^{1/2}$, $F_{ii} = 0$.
       The gauge is applied *before* the gap is dropped, as plmDCA does (the 20 x 20 block is
       then not itself zero-sum); CCMpred takes the same 20 x 20 norm of its couplings, which its
       L2 penalty keeps close to this gauge.
    4. Average product correction (APC, Dunn et al. 2008), as in plmDCA:
       $F^\mathrm{APC}_{ij} = F_{ij} - \bar F_{i\cdot}\,\bar F_{\cdot j} / \bar F_{\cdot\cdot}$ with
       means over the off-diagonal entries ($j \ne i$).

Evaluation
    Pairs i < j with $j - i \ge$ `min_sep` are ranked by decreasing score; precision at k (PPV)
    is the fraction of true contacts among the top k. A contact is a minimum heavy-atom distance
    below 8 Angstrom. Pairs whose distance is unknown (NaN) are left out of the ranking when
    `known` is passed (``known=np.isfinite(distances)``); otherwise they count as non-contacts.

Indices are 0-based match columns of the alignment (distance files are 1-based and are
converted by `read_distances`).

Files users exchange
    `write_ec`: plmc's coupling-score table (``.ec``/``.EC``, the input of EVcouplings), one pair
    i < j a line, ``i A_i j A_j 0 score``, ranked by decreasing score; i, j are the focus
    sequence's residue numbers and A_i, A_j its letters when the alignment was read with a focus
    (`jaxpotts.msa.read_focus_alignment`: ``NAME/start-end`` numbering, as plmc's ``-f``), else
    1-based match columns and '-'. `write_ccmpred`: CCMpred's L x L score matrix (``.mat``),
    one row per line, tab-separated. Both are written atomically (`jaxpotts._files`).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import math
import os
import time
from collections.abc import Sequence
from fractions import Fraction
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from . import defaults
from ._files import atomic_open
from ._validation import as_float_array, check_finite
from .potts import FactoredPotts, PottsModel, double_centre, symmetrize_couplings
from .sharding import pl_work, resolve_mesh

__all__ = [
    "frobenius_scores",
    "apc",
    "scores",
    "read_distances",
    "contact_map",
    "ranked_pairs",
    "precision",
    "precision_at",
    "plot_contact_map",
    "ContactPrediction",
    "PLM_DEFAULTS",
    "ATTENTION_DEFAULTS",
    "pipeline",
    "predict",
    "fit_memory",
    "site_numbers",
    "write_ec",
    "read_ec",
    "write_ccmpred",
    "read_ccmpred",
]


# ----------------------------------------------------------------------------- scores


def _kept_colours(q: int, include_gap: bool, gap_index: int | None) -> np.ndarray:
    if gap_index is not None:
        if isinstance(gap_index, bool) or not isinstance(gap_index, (int, np.integer)) or not 0 <= gap_index < q:
            raise ValueError(f"gap_index must be a colour in 0..{q - 1} or None, got {gap_index!r}")
    if include_gap or gap_index is None:
        return np.arange(q)
    return np.array([a for a in range(q) if a != gap_index])


def frobenius_scores(
    couplings: Float[Array, "L L q q"], *, include_gap: bool = False, gap_index: int | None = 0
) -> Float[Array, "L L"]:
    r"""Frobenius norms $F_{ij} = \lVert J'_{ij} \rVert$ of the symmetrised, zero-sum-gauge couplings.

    $J'$ is $\tfrac12[J_{ij}(a,b) + J_{ji}(b,a)]$ doubly centred over all q colours; the norm
    runs over all colours except `gap_index` (all colours when `include_gap` or when
    `gap_index` is None). Symmetric, zero diagonal, invariant under gauge changes
    $J_{ij}(a,b) \to J_{ij}(a,b) + f_{ij}(a) + g_{ij}(b)$. See the module docstring.
    Works inside jit.
    """
    C = as_float_array(couplings, "couplings")
    if C.ndim != 4 or C.shape[0] != C.shape[1] or C.shape[2] != C.shape[3]:
        raise ValueError(f"couplings must have shape (L, L, q, q), got {tuple(C.shape)}")
    check_finite(C, "couplings")
    keep = _kept_colours(C.shape[2], include_gap, gap_index)
    return _frobenius_dense(C, keep=tuple(int(a) for a in keep))


@partial(jax.jit, static_argnames=("keep",))
def _frobenius_dense(C: Float[Array, "L L q q"], *, keep: tuple[int, ...]) -> Float[Array, "L L"]:
    L, q = C.shape[0], C.shape[2]
    C = double_centre(symmetrize_couplings(C))
    if len(keep) < q:
        idx = np.asarray(keep)
        C = C[:, :, idx][:, :, :, idx]
    F = jnp.sqrt(jnp.sum(C * C, axis=(2, 3)))
    return jnp.where(jnp.eye(L, dtype=bool), 0.0, F)


def _factored_frobenius(model: FactoredPotts, include_gap: bool, gap_index: int | None) -> Float[Array, "L L"]:
    r"""$F_{ij}$ of $J_{ij} U(a,b)$ without building (L, L, q, q).

    Symmetrising gives $J^s_{ij} U^s + J^a_{ij} U^a$ (symmetric and antisymmetric parts); after
    centring and restricting colours, $A = [P U^s P]$ is symmetric and $B = [P U^a P]$
    antisymmetric, so they are orthogonal and
    $F_{ij}^2 = (J^s_{ij})^2 \lVert A\rVert^2 + (J^a_{ij})^2 \lVert B\rVert^2$.
    """
    keep = _kept_colours(model.q, include_gap, gap_index)
    return _frobenius_factored(model.J, model.U, keep=tuple(int(a) for a in keep))


@partial(jax.jit, static_argnames=("keep",))
def _frobenius_factored(
    J: Float[Array, "L L"], U: Float[Array, "q q"], *, keep: tuple[int, ...]
) -> Float[Array, "L L"]:
    idx = np.asarray(keep)
    Js, Ja = 0.5 * (J + J.T), 0.5 * (J - J.T)
    A = double_centre(0.5 * (U + U.T))[idx][:, idx]
    B = double_centre(0.5 * (U - U.T))[idx][:, idx]
    F = jnp.sqrt(Js**2 * jnp.sum(A * A) + Ja**2 * jnp.sum(B * B))
    return jnp.where(jnp.eye(J.shape[0], dtype=bool), 0.0, F)


def apc(scores: Float[Array, "L L"]) -> Float[Array, "L L"]:
    r"""Average product correction $S_{ij} - \bar S_{i\cdot} \bar S_{\cdot j} / \bar S_{\cdot\cdot}$.

    Means over the off-diagonal entries (the diagonal of `scores` is ignored):
    $\bar S_{i\cdot} = \sum_{j\ne i} S_{ij} / (L-1)$, $\bar S_{\cdot j}$ likewise over i, and
    $\bar S_{\cdot\cdot} = \sum_{i\ne j} S_{ij} / (L(L-1))$ (plmDCA's formula). The result has a
    zero diagonal; if every off-diagonal score is zero the scores are returned unchanged.
    Works inside jit.
    """
    S = as_float_array(scores, "scores")
    if S.ndim != 2 or S.shape[0] != S.shape[1] or S.shape[0] < 2:
        raise ValueError(f"scores must be a square (L, L) matrix with L >= 2, got shape {tuple(S.shape)}")
    return _apc_core(S)


@jax.jit
def _apc_core(S: Float[Array, "L L"]) -> Float[Array, "L L"]:
    L = S.shape[0]
    off = ~jnp.eye(L, dtype=bool)
    S = jnp.where(off, S, 0.0)
    row = S.sum(axis=1) / (L - 1)
    col = S.sum(axis=0) / (L - 1)
    total = S.sum() / (L * (L - 1))
    safe = jnp.where(total == 0, 1.0, total)
    corrected = jnp.where(total == 0, S, S - jnp.outer(row, col) / safe)
    return jnp.where(off, corrected, 0.0)


def scores(
    model: PottsModel | FactoredPotts,
    *,
    include_gap: bool = False,
    apc: bool = True,
    gap_index: int | None = 0,
) -> Float[Array, "L L"]:
    r"""Contact scores of a model: Frobenius norms of the gauge-fixed couplings, then APC.

    `frobenius_scores` of the (symmetrised) couplings, followed by `apc` when ``apc=True``.
    For a `FactoredPotts` the norm factorises and costs $O(L^2 + q^2)$: for symmetric U,
    $F_{ij} = |J_{ij}|\,\lVert U' \rVert$ with $U'$ the centred U restricted to the kept colours.
    Colour `gap_index` (default 0, the gap of the protein and RNA alphabets) is left out of
    the norm unless `include_gap`; use ``gap_index=None`` for alphabets without a gap.
    """
    if isinstance(model, PottsModel):
        F = frobenius_scores(model.couplings, include_gap=include_gap, gap_index=gap_index)
    elif isinstance(model, FactoredPotts):
        F = _factored_frobenius(model, include_gap, gap_index)
    else:
        raise TypeError(f"scores takes a PottsModel or FactoredPotts, got {type(model).__name__}")
    return _apc(F) if apc else F


_apc = apc


# ----------------------------------------------------------------------------- structures


def read_distances(path: str | os.PathLike[str], L: int | None = None) -> Float[np.ndarray, "L L"]:
    r"""Residue distance matrix from a pair list, NaN where unknown, zero diagonal.

    Rows are ``i j ... distance`` with 1-based match-column indices i, j and the distance in
    the *last* column; lines starting with '#' are skipped, gzip is detected. Both layouts in
    ``shared/data/pfam`` read correctly:

    - ``PF00763_distances.dat``: ``i j distance``.
    - ``PF00014_struct.dat``: ``i j score distance``. The third column is not a distance: it
      takes negative values, the rows are sorted by it in decreasing order and it is largest
      for residues adjacent in sequence, i.e. a precomputed DCA score. The fourth is the minimum
      heavy-atom distance in Angstrom (1.0 to 28): 1.0 to 1.3 for every pair j = i + 1, the
      length of the peptide bond joining them, 2 or more for most other pairs.

    Args:
        path: the file.
        L: number of match columns (default: the largest index in the file).

    Returns:
        Symmetric (L, L) float64 array, ``D[i-1, j-1] = D[j-1, i-1]`` = distance.

    Raises:
        ValueError: fewer than 3 columns, non-integer or out-of-range indices, negative
            distances, or a pair listed twice with different distances.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if not data.strip():
        raise ValueError(f"{os.fspath(path)}: the file is empty")
    try:
        table = np.loadtxt(io.BytesIO(data), comments="#", ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{os.fspath(path)}: not a table of numbers ({err})") from err
    if table.shape[1] < 3:
        raise ValueError(f"{os.fspath(path)}: expected rows 'i j ... distance', found {table.shape[1]} column(s)")
    ij, dist = table[:, :2], table[:, -1]
    if not np.all(ij == np.round(ij)) or ij.min() < 1:
        raise ValueError(f"{os.fspath(path)}: the first two columns must be 1-based integer residue indices")
    ij = ij.astype(np.int64) - 1
    top = int(ij.max()) + 1
    if L is None:
        L = top
    elif top > L:
        raise ValueError(f"{os.fspath(path)}: index {top} is larger than L={L}")
    if np.any(dist < 0):
        raise ValueError(f"{os.fspath(path)}: negative distance {float(dist[dist < 0][0])}")
    i, j = ij[:, 0], ij[:, 1]
    # A pair listed twice (as i j or as j i) must agree.
    key = np.minimum(i, j) * L + np.maximum(i, j)
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    d_sorted = dist[order]
    differ = same & ~((d_sorted[1:] == d_sorted[:-1]) | (np.isnan(d_sorted[1:]) & np.isnan(d_sorted[:-1])))
    if differ.any():
        k = order[int(np.flatnonzero(differ)[0])]
        raise ValueError(
            f"{os.fspath(path)}: pair ({i[k] + 1}, {j[k] + 1}) is listed more than once with different distances"
        )
    D = np.full((L, L), np.nan)
    D[i, j] = dist
    D[j, i] = dist
    np.fill_diagonal(D, 0.0)
    return D


def contact_map(distances: Float[np.ndarray, "L L"], threshold: float = 8.0) -> Bool[np.ndarray, "L L"]:
    r"""Contacts $d_{ij} <$ `threshold` (Angstrom); False on the diagonal and where d is NaN.

    Pass ``known=np.isfinite(distances)`` to `precision` to leave unknown pairs out.
    """
    D = np.asarray(distances, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"distances must be a square (L, L) matrix, got shape {D.shape}")
    with np.errstate(invalid="ignore"):
        C = D < threshold
    np.fill_diagonal(C, False)
    return C


# ----------------------------------------------------------------------------- evaluation


def _square(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square (L, L) matrix, got shape {a.shape}")
    return a


def ranked_pairs(
    scores: Float[Array, "L L"], min_sep: int = 5, *, known: Bool[np.ndarray, "L L"] | None = None
) -> Int[np.ndarray, "n 2"]:
    r"""Pairs (i, j), i < j, $j - i \ge$ `min_sep`, by decreasing score (ties: increasing i, then j).

    Only the upper triangle of `scores` is read. Pairs where `known` is False are left out.
    Returns an int array (n, 2) of 0-based indices.
    """
    S = _square(scores, "scores").astype(np.float64)
    L = S.shape[0]
    if isinstance(min_sep, bool) or not isinstance(min_sep, (int, np.integer)) or min_sep < 1:
        raise ValueError(f"min_sep must be an integer >= 1, got {min_sep!r}")
    i, j = np.triu_indices(L, k=min_sep)
    if known is not None:
        K = _square(known, "known").astype(bool)
        if K.shape != S.shape:
            raise ValueError(f"known has shape {K.shape}, scores {S.shape}")
        ok = K[i, j]
        i, j = i[ok], j[ok]
    values = S[i, j]
    if not np.all(np.isfinite(values)):
        raise ValueError("scores contain NaN or inf among the ranked pairs")
    order = np.argsort(-values, kind="stable")
    return np.stack([i[order], j[order]], axis=1)


def precision(
    scores: Float[Array, "L L"],
    contact_map: Bool[np.ndarray, "L L"],
    k: int,
    min_sep: int = 5,
    *,
    known: Bool[np.ndarray, "L L"] | None = None,
) -> float:
    r"""Precision (PPV) of the top-k pairs: fraction of true contacts among them.

    Pairs are ranked by `ranked_pairs` (i < j, $j - i \ge$ `min_sep`, pairs where `known` is
    False left out). Raises if fewer than k pairs can be ranked.
    """
    C = _square(contact_map, "contact_map").astype(bool)
    if C.shape != np.shape(scores):
        raise ValueError(f"contact_map has shape {C.shape}, scores {np.shape(scores)}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    pairs = ranked_pairs(scores, min_sep, known=known)
    if k > len(pairs):
        raise ValueError(f"k={k} but only {len(pairs)} pairs with separation >= {min_sep} can be ranked")
    top = pairs[:k]
    return float(np.mean(C[top[:, 0], top[:, 1]]))


def _fraction_label(f: float) -> str:
    fr = Fraction(f).limit_denominator(1000)
    num = "L" if fr.numerator == 1 else f"{fr.numerator}L"
    return num if fr.denominator == 1 else f"{num}/{fr.denominator}"


def precision_at(
    scores: Float[Array, "L L"],
    contact_map: Bool[np.ndarray, "L L"],
    fractions: Sequence[float] = (1 / 5, 1 / 2, 1),
    min_sep: int = 5,
    *,
    known: Bool[np.ndarray, "L L"] | None = None,
) -> dict[str, float]:
    r"""Precision at $k = \lfloor f L \rfloor$ (at least 1) for each fraction f.

    Returns a dict keyed "L/5", "L/2", "L", ... (e.g. L = 53: k = 10, 26, 53).
    """
    L = _square(scores, "scores").shape[0]
    out = {}
    for f in fractions:
        if not f > 0:
            raise ValueError(f"fractions must be positive, got {f!r}")
        k = max(1, math.floor(f * L + 1e-9))
        out[_fraction_label(f)] = precision(scores, contact_map, k, min_sep, known=known)
    return out


def plot_contact_map(
    scores: Float[Array, "L L"],
    contact_map: Bool[np.ndarray, "L L"],
    k: int,
    min_sep: int = 5,
    *,
    known: Bool[np.ndarray, "L L"] | None = None,
    ax=None,
    title: str | None = None,
):
    """Contact-map figure: top-k predictions above the diagonal, true contacts below.

    True contacts (|i - j| >= `min_sep`) are grey squares in the lower triangle; the top-k
    predicted pairs are drawn at (j, i) in the upper triangle, blue when in contact, red when
    not. Positions are 1-based match columns. Draws into `ax` if given, else a new figure (no
    pyplot state is touched). Returns the matplotlib Figure.
    """
    from matplotlib.figure import Figure

    C = _square(contact_map, "contact_map").astype(bool)
    L = C.shape[0]
    pairs = ranked_pairs(scores, min_sep, known=known)[:k]
    if ax is None:
        fig = Figure(figsize=(5, 5.4), layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    ti, tj = np.nonzero(np.triu(C, k=min_sep))
    ax.scatter(ti + 1, tj + 1, s=12, marker="s", color="0.7", linewidths=0, label="contacts")
    hit = C[pairs[:, 0], pairs[:, 1]]
    ax.scatter(pairs[hit, 1] + 1, pairs[hit, 0] + 1, s=14, color="tab:blue", label="predicted, true")
    ax.scatter(pairs[~hit, 1] + 1, pairs[~hit, 0] + 1, s=14, color="tab:red", label="predicted, false")
    ax.plot([0.5, L + 0.5], [0.5, L + 0.5], color="0.5", linewidth=0.5)
    ax.set_xlim(0.5, L + 0.5)
    ax.set_ylim(L + 0.5, 0.5)
    ax.set_aspect("equal")
    ax.set_xlabel("position j")
    ax.set_ylabel("position i")
    ppv = float(np.mean(hit)) if len(pairs) else float("nan")
    ax.set_title(title if title is not None else f"top {len(pairs)} pairs, precision {ppv:.2f}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize="small", frameon=False)
    return fig


# ----------------------------------------------------------------------------- files users exchange


def site_numbers(alignment: Any) -> tuple[Int[np.ndarray, " L"], str | None]:
    r"""How the output files number the alignment's L sites: (numbers, letters).

    For a `jaxpotts.msa.FocusAlignment` (read by `jaxpotts.msa.read_focus_alignment`): the focus
    sequence's residue numbers (``NAME/start-end``: $\text{start} + $ the residues before the
    column) and its letters, as plmc writes them with ``-f``. Otherwise: the 1-based match columns
    of the file (``alignment.columns + 1``, the numbering of distance files) and no letters (None).
    """
    from .msa import Alignment, FocusAlignment

    if isinstance(alignment, FocusAlignment):
        residues = np.asarray(alignment.focus.residues, dtype=np.int64)
        if np.any(residues < 0):
            raise ValueError(
                f"the focus {alignment.focus.name!r} has a gap at {int(np.sum(residues < 0))} kept site(s) "
                "(read with keep_focus_gaps=True): they have no residue number; read without it"
            )
        return residues, alignment.focus.letters
    if isinstance(alignment, Alignment):
        return np.asarray(alignment.columns, dtype=np.int64) + 1, None
    raise TypeError(f"site_numbers takes a jaxpotts.msa.Alignment, got {type(alignment).__name__}")


def _scores_and_numbering(scores: Any, residues: Any, letters: str | None):
    """The (L, L) scores and the numbers/letters of their sites, from a ContactPrediction or arrays."""
    if isinstance(scores, ContactPrediction):
        own_residues, own_letters = site_numbers(scores.alignment)
        residues = own_residues if residues is None else residues
        letters = own_letters if letters is None else letters
        scores = scores.scores
    S = _square(scores, "scores").astype(np.float64)
    L = S.shape[0]
    r = np.arange(1, L + 1) if residues is None else np.asarray(residues)
    if r.shape != (L,) or not np.issubdtype(r.dtype, np.integer):
        raise ValueError(f"residues must be {L} integers (one per site), got shape {r.shape}, dtype {r.dtype}")
    if len(np.unique(r)) != L:
        raise ValueError("residues must be distinct: two sites have the same number")
    a = "-" * L if letters is None else letters
    if len(a) != L or any(c.isspace() for c in a):
        raise ValueError(f"letters must be one non-blank character per site ({L}), got {len(a)}")
    return S, r, a


def write_ec(
    path: str | os.PathLike[str],
    scores: Any,
    *,
    residues: Int[np.ndarray, " L"] | None = None,
    letters: str | None = None,
    min_sep: int = 1,
) -> None:
    r"""Write ranked pairs in plmc's coupling-score format (``.ec``; EVcouplings reads it).

    One line per pair i < j with $j - i \ge$ `min_sep` (site separation), in decreasing order of
    score (`ranked_pairs`; plmc writes the same lines in site order):
    ``i A_i j A_j 0 score`` (space-separated; ``0`` is plmc's placeholder column; score with
    six decimals, as plmc's ``%f``).

    Args:
        path: the file (written atomically).
        scores: an (L, L) score matrix or a `ContactPrediction` (whose alignment supplies the
            numbering: `site_numbers`).
        residues: number of each site (default: from the ContactPrediction, else 1..L).
        letters: one letter per site, e.g. the focus sequence (default: from the
            ContactPrediction, else '-' as plmc writes without a focus).
        min_sep: smallest site separation written (default 1: every pair, as plmc).
    """
    S, r, a = _scores_and_numbering(scores, residues, letters)
    pairs = ranked_pairs(S, min_sep)
    with atomic_open(path) as fh:
        fh.writelines(f"{r[i]} {a[i]} {r[j]} {a[j]} 0 {S[i, j]:f}\n" for i, j in pairs)


def read_ec(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    r"""Read a plmc coupling-score file (``i A_i j A_j 0 score`` lines, any order).

    Returns a dict of arrays in file order: ``i``, ``j`` (int64 residue numbers), ``A_i``,
    ``A_j`` (letters), ``score`` (float64). Raises ValueError naming the line of a malformed row.
    """
    i, ai, j, aj, sc = [], [], [], [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            try:
                if len(parts) != 6:
                    raise ValueError(f"{len(parts)} fields")
                i.append(int(parts[0]))
                j.append(int(parts[2]))
                sc.append(float(parts[5]))
            except ValueError as err:
                raise ValueError(
                    f"{os.fspath(path)}, line {lineno}: expected 'i A_i j A_j 0 score' ({err}): {line.strip()!r}"
                ) from None
            ai.append(parts[1])
            aj.append(parts[3])
    return dict(
        i=np.asarray(i, dtype=np.int64),
        A_i=np.asarray(ai, dtype=str),
        j=np.asarray(j, dtype=np.int64),
        A_j=np.asarray(aj, dtype=str),
        score=np.asarray(sc, dtype=np.float64),
    )


def write_ccmpred(path: str | os.PathLike[str], scores: Any) -> None:
    r"""Write the (L, L) scores as CCMpred writes its contact matrix (``.mat``).

    Row i of the matrix on line i, each entry as ``%.20e`` followed by a tab (CCMpred's
    `write_matrix`); rows and columns are the L sites in order (`site_numbers` says which
    residue each is). `scores` is a matrix or a `ContactPrediction`. Written atomically.
    """
    S, _, _ = _scores_and_numbering(scores, None, None)
    with atomic_open(path) as fh:
        fh.writelines("".join(f"{v:.20e}\t" for v in row) + "\n" for row in S)


def read_ccmpred(path: str | os.PathLike[str]) -> Float[np.ndarray, "L L"]:
    """Read a CCMpred matrix (whitespace-separated rows; '#' lines, as CCMpred's ``#>META>``,
    skipped). Raises ValueError if it is not a square matrix of finite numbers."""
    try:
        S = np.loadtxt(path, comments="#", ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{os.fspath(path)}: not a matrix of numbers ({err})") from err
    if S.shape[0] != S.shape[1]:
        raise ValueError(f"{os.fspath(path)}: expected a square matrix, got {S.shape[0]} x {S.shape[1]}")
    if not np.all(np.isfinite(S)):
        raise ValueError(f"{os.fspath(path)}: the matrix has NaN or inf entries")
    return S


# ----------------------------------------------------------------------------- the pipeline

#: plmDCA defaults: `jaxpotts.defaults.PLM` (the one table; this is a copy for reading).
PLM_DEFAULTS = dict(defaults.PLM.fit)

#: Factored attention for contacts: `jaxpotts.defaults.ATTENTION_CONTACTS` (layer and fit options).
ATTENTION_DEFAULTS = {**defaults.ATTENTION_CONTACTS.model, **defaults.ATTENTION_CONTACTS.fit}

_METHODS = ("plm", "attention")


@dataclasses.dataclass(frozen=True)
class ContactPrediction:
    """What `pipeline` produced.

    Attributes:
        scores: (L, L) APC-corrected Frobenius scores over the alignment's match columns.
        model: the fitted model: a `PottsModel` (plm, non-symmetric couplings) or a
            `FactoredAttention`.
        potts: the Potts model the scores were read from (`model` itself, or `to_potts()`).
        alignment: the `jaxpotts.msa.Alignment` as read.
        weights: sequence weights (M,), numpy.
        m_eff: effective number of sequences, the sum of the weights.
        history: the fit's `jaxpotts.training.History`.
        seconds: wall time of each stage: read, weights, fit, scores, total.
        method: "plm" or "attention"; options: the settings used (defaults filled in).
    """

    scores: np.ndarray
    model: Any
    potts: PottsModel
    alignment: Any
    weights: np.ndarray
    m_eff: float
    history: Any
    seconds: dict
    method: str
    options: dict

    def precision(
        self, distances, fractions: Sequence[float] = (1 / 5, 1 / 2, 1), *, threshold: float = 8.0, min_sep: int = 5
    ) -> dict[str, float]:
        """`precision_at` of these scores against a distance matrix (`read_distances`);
        pairs with unknown distance are left out. `distances` are over the sites or over all
        match columns of the file (`site_distances`)."""
        D = self.site_distances(distances)
        return precision_at(self.scores, contact_map(D, threshold), fractions, min_sep, known=np.isfinite(D))

    def site_distances(self, distances) -> np.ndarray:
        """The (L, L) distances of the sites: `distances` as given when they are (L, L), or
        their rows and columns ``alignment.columns`` when they cover all the file's match columns
        (a distance file is indexed by match column; a focus alignment keeps only some)."""
        D = np.asarray(distances, dtype=np.float64)
        L, n = self.scores.shape[0], self.alignment.n_columns
        if D.shape == (L, L):
            return D
        if D.shape == (n, n):
            cols = np.asarray(self.alignment.columns)
            return D[np.ix_(cols, cols)]
        raise ValueError(
            f"distances have shape {D.shape} but the alignment has L = {L} sites ({n} match columns in the file)"
        )


def _fit_setup(aln: Any, method: str, mesh: Any, options: dict, weights: Any = None, max_memory: Any = None):
    """The fit's settings, its (distinct) sequences and weights and its mesh, as `pipeline` uses
    them. ``mesh="auto"`` stays on one device when the fit's estimate over all devices (the
    parameters replicated on each) exceeds the memory budget and one device's does not."""
    from . import msa
    from .memory import memory_budget

    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    table = defaults.PLM if method == "plm" else defaults.ATTENTION_CONTACTS
    settings = table.settings(**options)
    settings.pop("init", None)  # plmDCA's start: fit_plm's own default
    # Copies of a sequence are one term of the (weighted) pseudo-likelihood: fit each once.
    fit_seqs, fit_weights = msa.merge_duplicates(aln.seqs, weights)
    rows = fit_seqs.shape[0] if settings.get("batch_size") is None else min(settings["batch_size"], fit_seqs.shape[0])
    auto = isinstance(mesh, str)
    mesh = resolve_mesh(mesh, pl_work(rows, aln.L, aln.alphabet.q))  # the rows one loss evaluation sees
    if auto and mesh is not None and mesh.size > 1:
        budget = memory_budget(max_memory)[0]
        too_big = budget is not None and _estimate(aln, method, settings, fit_seqs.shape[0], mesh.size).total > budget
        if too_big and _estimate(aln, method, settings, fit_seqs.shape[0], 1).total <= budget:
            mesh = None
    return settings, fit_seqs, fit_weights, mesh


def _estimate(aln: Any, method: str, settings: dict, M: int, n_devices: int):
    from .memory import fit_estimate

    shape = {} if method == "plm" else {"n_heads": settings["n_heads"]}
    return fit_estimate(
        aln.L,
        aln.alphabet.q,
        M,
        kind="plm" if method == "plm" else "attention",
        optimizer=settings["optimizer"],
        batch_size=settings.get("batch_size"),
        n_devices=n_devices,
        **shape,
    )


def fit_memory(
    alignment: Any, method: str = "plm", *, mesh: Any = "auto", max_memory: Any = None, **options: Any
) -> Any:
    r"""The peak-memory estimate (`jaxpotts.memory.fit_estimate`) of the fit `pipeline` would run.

    The same settings, distinct sequences and device mesh as `pipeline(alignment, method,
    mesh=mesh, max_memory=max_memory, **options)`; `pipeline` refuses a fit whose estimate
    exceeds the budget (``max_memory``, default the available memory), and with
    ``mesh="auto"`` stays on one device when only that fits. For plmDCA the parameters
    dominate: $n = L^2 q^2 + Lq$ floats, kept in about 14 copies (8 of them on every device of
    a mesh) plus the L-BFGS memory (2 x 21 vectors, split over the devices); the
    pseudo-likelihood itself is evaluated in blocks of at most 512 sequences, so M costs only
    the sequences ($3 M L$ int32).

    Args:
        alignment: an already read `jaxpotts.msa.Alignment`.
        method, mesh, max_memory, **options: as for `pipeline`.

    Returns:
        A `jaxpotts.memory.MemoryEstimate` (``str()`` gives the total and the largest parts).
    """
    from .msa import Alignment

    if not isinstance(alignment, Alignment):
        raise TypeError(f"fit_memory takes a jaxpotts.msa.Alignment, got {type(alignment).__name__}")
    settings, fit_seqs, _, mesh = _fit_setup(alignment, method, mesh, options, max_memory=max_memory)
    return _estimate(alignment, method, settings, fit_seqs.shape[0], getattr(mesh, "size", 1))


def pipeline(
    alignment: str | os.PathLike[str] | Any,
    method: str = "plm",
    *,
    key: jax.Array | None = None,
    theta: float = 0.8,
    alphabet: Any = "protein",
    max_gap_fraction: float | None = None,
    mesh: Any = "auto",
    progress: bool | None = None,
    max_memory: Any = None,
    **options: Any,
) -> ContactPrediction:
    r"""Read, weight, fit and score: contact prediction from an alignment with working defaults.

    1. Read the alignment (`jaxpotts.msa.read_alignment`: FASTA/A2M/A3M/Stockholm; insert
       columns dropped), optionally dropping sequences with more than `max_gap_fraction` gaps.
    2. Sequence weights at identity threshold `theta` (0.8), $M_\mathrm{eff} = \sum_m w_m$.
    3. Fit by weighted pseudo-likelihood with plmDCA's L2 convention (``l2`` = $\lambda_J$,
       ``l2_fields`` = $\lambda_h$; CCMpred's ``lambda_pair`` = $\lambda_J M_\mathrm{eff}$;
       plmDCA's default ``l2="auto"`` is $\max(0.01, 0.01 (q-1)(L-1)/M_\mathrm{eff})$,
       `jaxpotts.training.plmdca_settings`):
       ``method="plm"``: asymmetric plmDCA (`jaxpotts.training.fit_plm`, `PLM_DEFAULTS`);
       ``method="attention"``: a `FactoredAttention` layer trained by MLM (`ATTENTION_DEFAULTS`;
       ``n_heads``, ``head_dim``, ``fields``, ``init_scale`` set the layer), its couplings
       $J_{ij}(a,b) = \sum_h A^h_{ij} V^h(a,b)$. Identical sequences enter the fit once, with
       their summed weight (`jaxpotts.msa.merge_duplicates`: the same objective, fewer rows).
    4. Scores: symmetrise, zero-sum gauge, Frobenius norm over the 20 amino acids (gap left out),
       APC (`scores`).

    Args:
        alignment: a path, or an already read `jaxpotts.msa.Alignment`; a
            `jaxpotts.msa.FocusAlignment` (`read_focus_alignment`: the focus sequence's columns)
            numbers the output files by the focus residues (`site_numbers`, `write_ec`).
        method: "plm" or "attention".
        key: PRNG key of the attention layer (split for its initialisation and the minibatch order;
            default PRNGKey(0)).
        theta: identity threshold of the sequence weights.
        alphabet, max_gap_fraction: passed to `read_alignment`.
        mesh: "auto" (split the sequences over all devices when there are several and the fit is
            large enough to gain, `jaxpotts.sharding.default_mesh`, and its memory estimate
            with the parameters on every device fits the budget), None (one device) or a
            `data_mesh()`.
        progress: progress bar of the fit (None: only on a terminal).
        max_memory: memory budget of the fit's up-front check (`jaxpotts.memory.check_memory`).
        **options: override the method's defaults (`jaxpotts.defaults.PLM` /
            `ATTENTION_CONTACTS`: their model and fit options, or any other option of `jaxpotts.fit`).

    Returns:
        `ContactPrediction` with the (L, L) scores, the model, weights, timings and settings.
    """
    from . import msa, training
    from .attention import FactoredAttention

    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    t0 = time.perf_counter()
    if isinstance(alignment, msa.Alignment):
        aln = alignment
    else:
        aln = msa.read_alignment(alignment, alphabet=alphabet, max_gap_fraction=max_gap_fraction)
    t_read = time.perf_counter()
    weights = np.asarray(msa.sequence_weights(aln, theta))
    m_eff = float(weights.sum())
    t_weights = time.perf_counter()

    settings, fit_seqs, fit_weights, mesh = _fit_setup(aln, method, mesh, options, weights, max_memory)
    q = aln.alphabet.q
    if method == "plm":
        settings = training.plmdca_settings(aln.L, q, m_eff, **settings)  # l2="auto" -> its number, kept in options
        settings.pop("init")
        model, history = training.fit_plm(
            fit_seqs, q=q, weights=fit_weights, progress=progress, mesh=mesh, max_memory=max_memory, **settings
        )
        potts = model
    else:
        layer = {k: settings.pop(k) for k in defaults.ATTENTION_CONTACTS.model}
        # One key for the layer's initialisation, another for the minibatch order.
        k_init, k_fit = jax.random.split(jax.random.PRNGKey(0) if key is None else key)
        init = FactoredAttention(aln.L, q, layer.pop("n_heads"), layer.pop("head_dim"), key=k_init, **layer)
        model, history = training.fit(
            init,
            fit_seqs,
            key=k_fit,
            weights=fit_weights,
            progress=progress,
            mesh=mesh,
            max_memory=max_memory,
            **settings,
        )
        potts = model.to_potts()
    t_fit = time.perf_counter()
    S = np.asarray(scores(potts, gap_index=aln.alphabet.gap_index), dtype=np.float64)
    t_end = time.perf_counter()
    seconds = dict(
        read=t_read - t0, weights=t_weights - t_read, fit=t_fit - t_weights, scores=t_end - t_fit, total=t_end - t0
    )
    return ContactPrediction(
        scores=S,
        model=model,
        potts=potts,
        alignment=aln,
        weights=weights,
        m_eff=m_eff,
        history=history,
        seconds=seconds,
        method=method,
        options=dict(settings, theta=theta, max_gap_fraction=max_gap_fraction),
    )


def predict(alignment_path: str | os.PathLike[str], method: str = "plm", **options: Any) -> np.ndarray:
    r"""Contact scores (L, L) of an alignment: `pipeline(alignment_path, method, **options).scores`.

    The whole pipeline with working defaults: read, weight (0.8 identity), fit (plmDCA or
    factored attention), zero-sum gauge, Frobenius norm without gaps, APC. Indices are the
    alignment's match columns (0-based), as in distance files read by `read_distances`.
    """
    return pipeline(alignment_path, method, **options).scores
