r"""Mutation effects: energy differences of variants of a focus (wild-type) sequence.

The score of a variant is the energy difference of the fitted model (EVmutation, Hopf et al. 2017)

$$\Delta E(s^\mathrm{mut}) = E(s^\mathrm{mut}) - E(s^\mathrm{wt}), \qquad
  E(s) = -\sum_i h_i(s_i) - \sum_{i<j} J_{ij}(s_i, s_j),$$

so $-\Delta E = \log p(s^\mathrm{mut}) - \log p(s^\mathrm{wt})$ (EVmutation's ``delta_hamiltonian``):
higher means fitter. Tables written by this module carry both ``dE`` and ``prediction = -dE``.

Computation. For a variant that changes sites $S$ from $a_i$ (wild type) to $b_i$,

$$\Delta E = -\sum_{i \in S} [\phi_i(b_i) - \phi_i(a_i)]
  - \sum_{i<j \in S} [J_{ij}(b_i,b_j) - J_{ij}(b_i,a_j) - J_{ij}(a_i,b_j) + J_{ij}(a_i,a_j)],$$

with the wild type's local fields $\phi_i(c) = h_i(c) + \sum_{j \ne i} J_{ij}(c, a_j)$ computed once
($O(L^2 q)$). A variant of order K then costs $O(K^2)$ gathers: $10^5$ variants take well under a
second after compilation. Singles need only $\phi$: the full scan is
$\Delta E_{ia} = -[\phi_i(a) - \phi_i(a_i)]$, an (L, q) matrix with zeros at the wild type.

Models. Any joint Potts model: an independent-site model (`independent_model`, zero couplings),
plmDCA (`jaxpotts.training.fit_plm`: symmetric couplings by default for mutations, plmc's
model; asymmetric fits are made joint by $\tfrac12[J_{ij}(a,b) + J_{ji}(b,a)]$), factored attention
(``to_potts(symmetrize=True)``), a `FactoredPotts`, or anything with ``to_potts(symmetrize=True)``;
`jaxpotts.potts.joint_model` does the conversion.

Mutant notation: ``A24G`` (wild-type letter, residue number of the focus, mutant letter) and
multi-mutants joined by ':' (``A24G:C30T``), as in ProteinGym. Residue numbers are the focus's
(`jaxpotts.msa.read_focus_alignment`, from ``NAME/start-end``).

Regularisation for this task: `MUTATION_DEFAULTS`, see `plm_settings` and docs/mutations.md.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from . import defaults, losses
from .potts import FactoredPotts, PottsModel, check_joint, joint_model, local_fields

__all__ = [
    "MUTATION_DEFAULTS",
    "Mutation",
    "MutantArrays",
    "parse_mutant",
    "encode_mutants",
    "independent_model",
    "delta_energy",
    "score_mutants",
    "single_mutant_scan",
    "plot_scan",
    "spearman",
    "plm_settings",
    "MutationModel",
    "fit_model",
]


#: Defaults for mutation-effect models, EVmutation's protocol (plmc + EVcouplings) mapped to
#: jaxpotts' per-N_eff convention (docs/conventions.md, docs/mutations.md):
#:
#: * ``theta``: sequence weights at 0.8 identity (plmc ``-t 0.2``, a distance).
#: * ``coupling_factor``: lambda_J = coupling_factor * (q - 1) * (L - 1) in plmc's *absolute*
#:   objective (summed over weighted sequences; EVcouplings' ``lambda_J = 0.01`` with
#:   ``lambda_J_times_Lq``), i.e. ``l2 = 0.01 (q - 1)(L - 1) / N_eff`` in jaxpotts. The penalty
#:   per coupling grows with the number of couplings each conditional has, (q - 1)(L - 1),
#:   and shrinks with the data, N_eff: 0.020 on DHFR (L = 159, q = 21, N_eff = 1570), twice
#:   plmDCA's contact default 0.01.
#: * ``fields_absolute``: lambda_h = 0.01 in plmc's absolute objective, ``l2_fields = 0.01 / N_eff``.
#: * ``n_steps`` / ``ftol``: run L-BFGS to its gradient tolerance (at most 1000 iterations), no
#:   objective-change stop (ftol 0). Fields of rare residues converge last and carry single-
#:   mutant scores: on DHFR a stop at a 1e-4 objective change (70 iterations) gives Spearman
#:   0.398; the converged fit (366-435 iterations) 0.428-0.430 on 1 or 2 devices, while a cap
#:   at 300 iterations gave 0.437 or 0.427 depending on the device split (an unconverged point
#:   depends on rounding; the optimum does not).
#:
#: The rule and the symmetric model are EVmutation's (plmc's), carried over, not tuned on DHFR.
#: There the default reaches 0.433 converged, below EVmutation's 0.435 on the same alignment
#: (plmc, capped at 200 iterations, gaps as missing data); with asymmetric couplings half /
#: twice its lambda_J give 0.443 / 0.425, plmDCA's field penalty l2_fields = 0.01 gives 0.389
#: (benchmarks/README.md, docs/mutations.md).
#: * ``gaps``: "state", the gap a 21st colour of the pseudo-likelihood. "missing" is plmc's
#:   ``-g``, used by the EVmutation reference run (gapped sites and neighbours drop out,
#:   conditionals over the 20 amino acids; `jaxpotts.losses`); under the same lambda rule it
#:   gives 0.432 on DHFR with symmetric couplings (0.421-0.424 asymmetric), below the
#:   gap-as-state fits, so it is an option, not the default.
#: * ``couplings``: "symmetric", plmc's symmetric pseudo-likelihood (one coupling per pair inside
#:   the objective; with it the rule's penalty is exactly plmc's,
#:   `jaxpotts.engine.SymmetricConditionals`): the model the rule was made for. On DHFR it gives
#:   0.433 (0.432 with ``gaps="missing"``, plmc -g's model); "asymmetric" (L conditionals with
#:   their own J_ij and J_ji, averaged afterwards, plmDCA's) gives 0.428-0.430.
#: * ``pseudocount``: of the independent-site model, in effective sequences per state
#:   (`independent_model`).
MUTATION_DEFAULTS = {**defaults.MUTATIONS.model, **defaults.MUTATIONS.fit}  # jaxpotts.defaults.MUTATIONS


# ----------------------------------------------------------------------------- notation


class Mutation(NamedTuple):
    """One substitution: wild-type letter, residue number (of the focus), mutant letter."""

    wt: str
    residue: int
    mt: str

    def __str__(self) -> str:
        return f"{self.wt}{self.residue}{self.mt}"


_ONE = re.compile(r"([A-Za-z*\-])(-?\d+)([A-Za-z*\-])")


def parse_mutant(text: str) -> tuple[Mutation, ...]:
    r"""Parse ``"A24G"`` or a multi-mutant ``"A24G:C30T"`` into `Mutation` tuples.

    Each part is a wild-type letter, an integer residue number and a mutant letter; parts are
    joined by ':' (spaces around parts are ignored). Letters are read upper case.

    Raises:
        ValueError: empty text, an empty part (``"A24G::C30T"``), a part that is not
            letter-number-letter, or two substitutions of the same residue.
    """
    if not isinstance(text, str):
        raise TypeError(f"a mutant must be a string like 'A24G', got {type(text).__name__}")
    if not text.strip():
        raise ValueError("empty mutant string (expected e.g. 'A24G' or 'A24G:C30T')")
    out = []
    for part in text.split(":"):
        p = part.strip()
        m = _ONE.fullmatch(p)
        if m is None:
            why = "an empty part" if not p else f"{p!r} is not wild-type letter + residue number + mutant letter"
            raise ValueError(f"malformed mutant {text!r}: {why} (expected e.g. 'A24G' or 'A24G:C30T')")
        out.append(Mutation(m.group(1).upper(), int(m.group(2)), m.group(3).upper()))
    residues = [mu.residue for mu in out]
    if len(set(residues)) != len(residues):
        dup = next(r for r in residues if residues.count(r) > 1)
        raise ValueError(f"malformed mutant {text!r}: residue {dup} is substituted more than once")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class MutantArrays:
    r"""Variants as padded arrays over model sites (what `delta_energy` takes).

    Attributes:
        sites: (n, K) model sites (0-based), K the largest order; padding repeats a real site.
        colours: (n, K) mutant colours; padding holds the wild-type colour (a no-op).
        mask: (n, K) True for real substitutions.
        labels: the n mutant strings, normalised (``"A24G:C30T"``).
    """

    sites: Int[np.ndarray, "n K"]
    colours: Int[np.ndarray, "n K"]
    mask: Bool[np.ndarray, "n K"]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def encode_mutants(mutants: Sequence[str | Sequence[Mutation]], alignment) -> MutantArrays:
    r"""Check variants against the focus and turn them into site / colour arrays.

    Args:
        mutants: strings (``"A24G"``, ``"A24G:C30T"``) or already parsed `Mutation` tuples.
        alignment: a `jaxpotts.msa.FocusAlignment` (its focus gives the numbering, the wild-type
            letters and the sites; its alphabet the colours).

    Returns:
        `MutantArrays`.

    Raises:
        ValueError: naming the FIRST offending mutant (its row, 1-based, and text): a malformed
            string, a wild-type letter that differs from the focus at that residue, a residue
            outside the focus or not a model site, or a mutant letter that is not a symbol of
            the alphabet.
    """
    from .msa import FocusAlignment

    if not isinstance(alignment, FocusAlignment):
        raise TypeError(
            "encode_mutants needs a FocusAlignment (jaxpotts.msa.read_focus_alignment) for the "
            f"numbering and the wild type, got {type(alignment).__name__}"
        )
    focus, alphabet = alignment.focus, alignment.alphabet
    if isinstance(mutants, str):
        raise TypeError("mutants must be a sequence of strings, not one string; use [text]")
    parsed: list[tuple[Mutation, ...]] = []
    for k, m in enumerate(mutants):
        try:
            parsed.append(parse_mutant(m) if isinstance(m, str) else tuple(Mutation(*x) for x in m))
        except ValueError as err:
            raise ValueError(f"mutant number {k + 1}: {err}") from None
    if not parsed:
        raise ValueError("no mutants to score")
    symbols = set(alphabet.symbols)
    n, K = len(parsed), max(len(p) for p in parsed)
    flat = [(k, mu) for k, p in enumerate(parsed) for mu in p]
    residues = np.array([mu.residue for _, mu in flat], dtype=np.int64)
    for k, mu in flat:  # letters and wild type, first problem wins (in table order)
        label = ":".join(map(str, parsed[k]))
        if not focus.start <= mu.residue <= focus.end:
            focus.sites([mu.residue])  # raises the numbering error
        if focus.wild_type_letter(mu.residue) != mu.wt:
            raise ValueError(
                f"mutant number {k + 1} ({label!r}): wild-type letter {mu.wt!r} at residue {mu.residue} does not "
                f"match the focus {focus.name!r}, which has {focus.wild_type_letter(mu.residue)!r} there"
            )
        if mu.mt not in symbols:
            raise ValueError(
                f"mutant number {k + 1} ({label!r}): mutant letter {mu.mt!r} is not a symbol of the "
                f"{alphabet.name} alphabet {alphabet.symbols!r}"
            )
    try:
        site_of = focus.sites(residues)
    except ValueError as err:
        bad = next(k for k, mu in flat if focus.residues.tolist().count(mu.residue) == 0)
        raise ValueError(f"mutant number {bad + 1} ({':'.join(map(str, parsed[bad]))!r}): {err}") from None
    sites = np.zeros((n, K), np.int32)
    colours = np.zeros((n, K), np.int32)
    mask = np.zeros((n, K), bool)
    wt = alignment.wild_type
    lut = alphabet.index
    pos = 0
    for k, p in enumerate(parsed):
        for slot, mu in enumerate(p):
            s = int(site_of[pos])
            sites[k, slot], colours[k, slot], mask[k, slot] = s, lut[mu.mt], True
            pos += 1
        for slot in range(len(p), K):  # padding: a real site set to its wild type, masked out
            sites[k, slot], colours[k, slot] = sites[k, 0], wt[sites[k, 0]]
    return MutantArrays(sites=sites, colours=colours, mask=mask, labels=tuple(":".join(map(str, p)) for p in parsed))


# ----------------------------------------------------------------------------- models


def independent_model(
    seqs: Int[Array, "M L"], q: int, weights: Float[Array, " M"] | None = None, *, pseudocount: float = 0.5
) -> PottsModel:
    r"""Independent-site model: $h_i(a) = \log \tilde f_i(a)$ (centred over a), zero couplings.

    $\tilde f_i(a) = (W f_i(a) + \alpha) / (W + q\alpha)$ with the weighted frequencies
    $f_i$, $W = \sum_m w_m$ (= $M_\mathrm{eff}$) and $\alpha$ = `pseudocount` effective
    sequences per state, so its $\Delta E$ of a single mutant is
    $-\log[\tilde f_i(b) / \tilde f_i(a)]$. Returned as a `PottsModel` so that it scores like
    any other model.
    """
    from .statistics import site_frequencies

    if not (isinstance(pseudocount, (int, float)) and pseudocount > 0 and math.isfinite(pseudocount)):
        raise ValueError(f"pseudocount must be a finite number > 0, got {pseudocount!r}")
    arr = np.asarray(seqs)
    w = np.ones(arr.shape[0]) if weights is None else np.asarray(weights, np.float64)
    W = float(w.sum())
    f = np.asarray(site_frequencies(arr, q, weights), np.float64)
    ft = (W * f + pseudocount) / (W + q * pseudocount)
    h = np.log(ft)
    h -= h.mean(axis=1, keepdims=True)
    dtype = jnp.result_type(float)
    L = arr.shape[1]
    return PottsModel(jnp.asarray(h, dtype), jnp.zeros((L, L, q, q), dtype))


# ----------------------------------------------------------------------------- scoring


def _pair_values(model, i, j, a, b):
    """J_ij(a, b) for broadcastable index arrays (dense gather, or J_ij U(a,b) when factored)."""
    if isinstance(model, PottsModel):
        return model.couplings[i, j, a, b]
    return model.J[i, j] * model.U[a, b]


@jax.jit
def _delta_energy(model, wild_type, sites, colours, mask):
    phi = local_fields(model, wild_type)  # (L, q), once for all variants
    a = wild_type[sites]  # (n, K) wild-type colours
    b = colours
    m = mask.astype(phi.dtype)
    single = jnp.sum(m * (phi[sites, b] - phi[sites, a]), axis=1)
    K = sites.shape[1]
    if K == 1:
        return -single
    i, j = sites[:, :, None], sites[:, None, :]
    ai, aj, bi, bj = a[:, :, None], a[:, None, :], b[:, :, None], b[:, None, :]
    pair = (
        _pair_values(model, i, j, bi, bj)
        - _pair_values(model, i, j, bi, aj)
        - _pair_values(model, i, j, ai, bj)
        + _pair_values(model, i, j, ai, aj)
    )
    upper = jnp.triu(jnp.ones((K, K), bool), k=1)
    both = (m[:, :, None] * m[:, None, :]) * upper
    return -(single + jnp.sum(both * pair, axis=(1, 2)))


def delta_energy(
    model: PottsModel | FactoredPotts,
    wild_type: Int[Array, " L"],
    sites: Int[Array, "n K"],
    colours: Int[Array, "n K"],
    mask: Bool[Array, "n K"] | None = None,
) -> Float[Array, " n"]:
    r"""$\Delta E = E(\text{mutant}) - E(\text{wild type})$ of n variants, vectorised and jitted.

    Variant k sets ``sites[k, l]`` to ``colours[k, l]`` for every l with ``mask[k, l]`` (all
    True by default); its sites must be distinct. The wild type's local fields $\phi$ are
    computed once and (module docstring)

    $$\Delta E = -\sum_{i \in S} [\phi_i(b_i) - \phi_i(a_i)]
      - \sum_{i<j \in S} [J_{ij}(b_i,b_j) - J_{ij}(b_i,a_j) - J_{ij}(a_i,b_j) + J_{ij}(a_i,a_j)].$$

    Needs a joint model (`joint_model` makes one); checked on concrete parameters.
    """
    if not isinstance(model, (PottsModel, FactoredPotts)):
        raise TypeError(
            f"delta_energy takes a PottsModel or FactoredPotts (see jaxpotts.potts.joint_model), got {type(model).__name__}"
        )
    check_joint(model, "delta_energy")
    wt = jnp.asarray(wild_type, jnp.int32)
    if wt.shape != (model.L,):
        raise ValueError(f"wild_type must have shape (L,) = ({model.L},), got {tuple(wt.shape)}")
    S, C = np.asarray(sites), np.asarray(colours)
    if S.ndim != 2 or S.shape != C.shape:
        raise ValueError(f"sites and colours must have the same shape (n, K), got {S.shape} and {C.shape}")
    if S.size and (S.min() < 0 or S.max() >= model.L):
        raise ValueError(f"sites must be in 0..{model.L - 1}, found {S.min()}..{S.max()}")
    if C.size and (C.min() < 0 or C.max() >= model.q):
        raise ValueError(f"colours must be in 0..{model.q - 1}, found {C.min()}..{C.max()}")
    M = np.ones(S.shape, bool) if mask is None else np.asarray(mask, bool)
    if M.shape != S.shape:
        raise ValueError(f"mask must have shape {S.shape}, got {M.shape}")
    if S.shape[1] > 1:
        Sm = np.where(M, S, -1 - np.arange(S.shape[1]))  # masked slots never collide
        srt = np.sort(Sm, axis=1)
        if np.any(srt[:, 1:] == srt[:, :-1]):
            k = int(np.flatnonzero(np.any(srt[:, 1:] == srt[:, :-1], axis=1))[0])
            raise ValueError(f"variant {k} changes the same site twice")
    return _delta_energy(model, wt, jnp.asarray(S, jnp.int32), jnp.asarray(C, jnp.int32), jnp.asarray(M))


def score_mutants(model: Any, alignment, mutants: MutantArrays | Sequence[str]) -> np.ndarray:
    r"""$\Delta E$ (n,) of mutant strings (``"A24G"``, ``"A24G:C30T"``) relative to the focus.

    `model` is made joint with `joint_model`; `alignment` is the `FocusAlignment` the model was
    fitted on (same L, alphabet). Lower $\Delta E$ = predicted fitter; ``-dE`` is EVmutation's
    score. Returns float64 numpy.
    """
    potts = joint_model(model)
    if potts.L != alignment.L or potts.q != alignment.alphabet.q:
        raise ValueError(
            f"the model has L={potts.L}, q={potts.q} but the alignment L={alignment.L}, q={alignment.alphabet.q}"
        )
    arrays = mutants if isinstance(mutants, MutantArrays) else encode_mutants(mutants, alignment)
    dE = delta_energy(potts, alignment.wild_type, arrays.sites, arrays.colours, arrays.mask)
    return np.asarray(dE, np.float64)


@jax.jit
def _scan(model, wild_type):
    phi = local_fields(model, wild_type)
    return -(phi - phi[jnp.arange(phi.shape[0]), wild_type][:, None])


def single_mutant_scan(model: Any, wild_type: Int[Array, " L"]) -> Float[Array, "L q"]:
    r"""$\Delta E$ of every single mutant: $\Delta E_{ia} = -[\phi_i(a) - \phi_i(s^\mathrm{wt}_i)]$.

    An (L, q) matrix, zero at the wild type ($a = s^\mathrm{wt}_i$); row i is site i, column a
    colour a (gap included). `model` is made joint with `joint_model`.
    """
    potts = joint_model(model)
    wt = jnp.asarray(wild_type, jnp.int32)
    if wt.shape != (potts.L,):
        raise ValueError(f"wild_type must have shape (L,) = ({potts.L},), got {tuple(wt.shape)}")
    if int(wt.min()) < 0 or int(wt.max()) >= potts.q:
        raise ValueError(f"wild_type colours must be in 0..{potts.q - 1}")
    return _scan(potts, wt)


def plot_scan(
    scan: Float[Array, "L q"],
    alignment,
    *,
    include_gap: bool = False,
    ax=None,
    title: str | None = None,
):
    r"""Heatmap of a single-mutant scan: residues along x, mutant letters along y, colour = $-\Delta E$.

    Blue (positive) = predicted fitter than the wild type, red = worse; the wild type of each
    position is outlined (a dot). The colour scale is symmetric, clipped at the 1st/99th
    percentiles so a few extreme values do not wash out the map. The gap row is left out unless
    `include_gap`. Returns the matplotlib Figure (no pyplot state; save with
    `jaxpotts.plotting.save_figure`).
    """
    from matplotlib.figure import Figure

    S = -np.asarray(scan, np.float64)
    alphabet, focus = alignment.alphabet, alignment.focus
    L, q = S.shape
    if (L, q) != (alignment.L, alphabet.q):
        raise ValueError(f"scan has shape {S.shape}, the alignment (L, q) = {(alignment.L, alphabet.q)}")
    rows = [a for a in range(q) if include_gap or a != alphabet.gap_index]
    S = S[:, rows].T
    lim = float(np.percentile(np.abs(S), 99)) or 1.0
    if ax is None:
        fig = Figure(figsize=(min(3 + 0.09 * L, 40), 4.2), layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    im = ax.imshow(S, aspect="auto", cmap="RdBu", vmin=-lim, vmax=lim, interpolation="nearest")
    wt = alignment.wild_type
    xs = [i for i in range(L) if wt[i] in rows]
    ax.scatter(xs, [rows.index(int(wt[i])) for i in xs], s=4, color="black", label="wild type")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([alphabet.symbols[a] for a in rows], fontsize=6)
    step = max(1, L // 20)
    ticks = list(range(0, L, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(focus.residues[i]) if focus.residues[i] >= 0 else "-" for i in ticks], fontsize=7)
    ax.set_xlabel(f"residue of {focus.name}")
    ax.set_ylabel("mutant")
    ax.set_title(title if title is not None else f"single mutants of {focus.name}: -dE (blue: fitter than wild type)")
    fig.colorbar(im, ax=ax, label="-dE = log p(mut) / p(wt)", shrink=0.9)
    return fig


# ----------------------------------------------------------------------------- Spearman


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given the average of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new = np.concatenate([[True], xs[1:] != xs[:-1]])
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], x.size)  # exclusive
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    out = np.empty(x.size)
    out[order] = avg[group]
    return out


def spearman(x, y) -> float:
    r"""Spearman's rank correlation: Pearson's r of the ranks, ties given their average rank.

    $\rho = \mathrm{cov}(R_x, R_y) / (\sigma_{R_x} \sigma_{R_y})$. NaN when either input is
    constant. Raises on NaN/inf, on different lengths, or on fewer than 2 values.
    """
    a = np.asarray(x, np.float64).reshape(-1)
    b = np.asarray(y, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same length, got {a.size} and {b.size}")
    if a.size < 2:
        raise ValueError(f"Spearman needs at least 2 values, got {a.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("x and y must be finite (drop NaN rows first)")
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float("nan") if den == 0 else float(ra @ rb) / den


# ----------------------------------------------------------------------------- pipeline


def plm_settings(L: int, q: int, n_eff: float, **overrides: Any) -> dict:
    r"""`fit_plm` settings for mutation effects on an alignment of L sites, q colours, N_eff.

    The rule (EVmutation's, in jaxpotts' per-N_eff convention; docs/mutations.md):

    $$\lambda_J = c\,(q-1)(L-1) / N_\mathrm{eff}, \qquad \lambda_h = c_h / N_\mathrm{eff},$$

    ``c = MUTATION_DEFAULTS["coupling_factor"]`` (0.01, q counting the gap also with
    ``gaps="missing"``) and ``c_h = ["fields_absolute"]`` (0.01):
    plmc/EVcouplings minimise $\sum_m w_m \mathrm{PL}_m + c(q-1)(L-1)\sum_{i<j}\|e_{ij}\|^2 + c_h\|h\|^2$,
    and jaxpotts divides the data term by $N_\mathrm{eff} = \sum_m w_m$. Each conditional has
    $(q-1)(L-1)$ free coupling parameters, and the penalty grows with them; it shrinks as the
    data grow, as a Gaussian prior's weight does against a likelihood. Keys in `overrides`
    (``l2``, ``l2_fields``, ``n_steps``, ``ftol``, ``gaps``, ``couplings``, any `fit_plm` option)
    win. With ``couplings="symmetric"`` the penalty $\lambda_J\sum_{i<j}\|J_{ij}\|^2$ is exactly
    plmc's (one coupling per pair; `jaxpotts.engine.SymmetricConditionals`).
    """
    if not (n_eff > 0 and math.isfinite(n_eff)):
        raise ValueError(f"n_eff must be a finite number > 0, got {n_eff!r}")
    d = MUTATION_DEFAULTS
    out = dict(
        l2=losses.l2_rule(L, q, n_eff, factor=d["coupling_factor"]),
        l2_fields=d["fields_absolute"] / n_eff,
        n_steps=d["n_steps"],
        ftol=d["ftol"],
        tol=d["tol"],
        gaps=d["gaps"],
        couplings=d["couplings"],
    )
    out.update(overrides)
    return out


@dataclasses.dataclass(frozen=True)
class MutationModel:
    """What `fit_model` produced: a joint model of a focus alignment, ready to score.

    Attributes:
        potts: the joint model scored (`joint_model` of the fit).
        model: the fitted model as returned by the fit (asymmetric PottsModel, FactoredAttention ...).
        alignment: the `jaxpotts.msa.FocusAlignment`.
        weights: sequence weights (M,), numpy; m_eff: their sum.
        history: the fit's `History` (None for the independent model).
        seconds: wall time of read, weights, fit, total.
        method: "independent", "plm" or "attention"; options: the settings used.
    """

    potts: Any
    model: Any
    alignment: Any
    weights: np.ndarray
    m_eff: float
    history: Any
    seconds: dict
    method: str
    options: dict

    def score(self, mutants: MutantArrays | Sequence[str]) -> np.ndarray:
        r"""$\Delta E$ of mutant strings (`score_mutants`)."""
        return score_mutants(self.potts, self.alignment, mutants)

    def scan(self) -> np.ndarray:
        r"""(L, q) single-mutant $\Delta E$ (`single_mutant_scan`), numpy float64."""
        return np.asarray(single_mutant_scan(self.potts, self.alignment.wild_type), np.float64)


_METHODS = ("independent", "plm", "attention")


def fit_model(
    alignment: Any,
    method: str = "plm",
    *,
    focus: None | int | str = None,
    key: jax.Array | None = None,
    theta: float | None = None,
    alphabet: Any = "protein",
    progress: bool | None = None,
    mesh: Any = "auto",
    **options: Any,
) -> MutationModel:
    r"""Read (focus columns), weight, fit: a model for mutation effects with the documented defaults.

    1. `jaxpotts.msa.read_focus_alignment` (focus: the first sequence by default; focus-gap
       columns dropped).
    2. Sequence weights at identity `theta` (default ``MUTATION_DEFAULTS["theta"]`` = 0.8).
    3. Fit: ``"plm"``: plmDCA (`jaxpotts.training.fit_plm`) with `plm_settings`
       (EVmutation's lambda rule, plmc's symmetric couplings by default); ``"independent"``: `independent_model`
       (``pseudocount``); ``"attention"``: factored attention with
       `jaxpotts.defaults.ATTENTION_CONTACTS`, ``to_potts(symmetrize=True)``. Identical
       sequences enter a fit once with their summed weight.

    Args:
        alignment: a path, or a `FocusAlignment`.
        method: "plm" (default), "independent" or "attention".
        focus, alphabet: passed to `read_focus_alignment` (ignored for a FocusAlignment).
        key: PRNG key of the attention layer's initialisation (default PRNGKey(0)).
        progress: progress bar of the fit. mesh: as in `jaxpotts.contacts.pipeline`.
        **options: override settings (``l2``, ``l2_fields``, ``n_steps``, ``ftol``, ``gaps``
            ("missing": plmc's ``-g``, needs the gap at colour 0), ``pseudocount``, attention
            options, other `jaxpotts.training.fit` options).
    """
    from . import msa, training
    from .sharding import pl_work, resolve_mesh

    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    theta = MUTATION_DEFAULTS["theta"] if theta is None else theta
    t0 = time.perf_counter()
    aln = (
        alignment
        if isinstance(alignment, msa.FocusAlignment)
        else msa.read_focus_alignment(alignment, focus, alphabet=alphabet)
    )
    t_read = time.perf_counter()
    if options.get("gaps", MUTATION_DEFAULTS["gaps"] if method == "plm" else "state") == "missing":
        if aln.alphabet.gap_index != 0:
            raise ValueError(
                f"gaps='missing' treats colour 0 as the gap, but the {aln.alphabet.name} alphabet's gap is "
                f"{aln.alphabet.gap!r} (colour {aln.alphabet.gap_index}); use gaps='state'"
            )
    weights = np.asarray(msa.sequence_weights(aln, theta), np.float64)
    m_eff = float(weights.sum())
    t_weights = time.perf_counter()
    q, L = aln.alphabet.q, aln.L
    history = None
    if method == "independent":
        unknown = set(options) - {"pseudocount"}
        if unknown:
            raise TypeError(f"unknown option(s) for method='independent': {', '.join(sorted(unknown))}")
        settings = dict(pseudocount=options.get("pseudocount", MUTATION_DEFAULTS["pseudocount"]))
        model = independent_model(aln.seqs, q, weights, pseudocount=settings["pseudocount"])
    else:
        fit_seqs, fit_weights = msa.merge_duplicates(aln.seqs, weights)
        if method == "plm":
            settings = plm_settings(L, q, m_eff, **options)
            mesh = resolve_mesh(mesh, pl_work(fit_seqs.shape[0], L, q))
            model, history = training.fit_plm(
                fit_seqs, q=q, weights=fit_weights, progress=progress, mesh=mesh, **settings
            )
        else:
            from .attention import FactoredAttention

            settings = defaults.ATTENTION_CONTACTS.settings(**options)
            fit_kw = {k: v for k, v in settings.items() if k not in defaults.ATTENTION_CONTACTS.model}
            layer = {k: settings[k] for k in defaults.ATTENTION_CONTACTS.model}
            # One key for the layer's initialisation, another for the minibatch order.
            k_init, k_fit = jax.random.split(jax.random.PRNGKey(0) if key is None else key)
            init = FactoredAttention(L, q, layer.pop("n_heads"), layer.pop("head_dim"), key=k_init, **layer)
            rows = min(settings.get("batch_size") or fit_seqs.shape[0], fit_seqs.shape[0])
            mesh = resolve_mesh(mesh, pl_work(rows, L, q))
            model, history = training.fit(
                init, fit_seqs, key=k_fit, weights=fit_weights, progress=progress, mesh=mesh, **fit_kw
            )
    potts = joint_model(model)
    t_fit = time.perf_counter()
    seconds = dict(read=t_read - t0, weights=t_weights - t_read, fit=t_fit - t_weights, total=t_fit - t0)
    return MutationModel(
        potts=potts,
        model=model,
        alignment=aln,
        weights=weights,
        m_eff=m_eff,
        history=history,
        seconds=seconds,
        method=method,
        options=dict(settings, theta=theta),
    )
