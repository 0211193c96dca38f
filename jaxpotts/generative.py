r"""How well a fitted Potts model generates its protein family: the validation report.

`validate(model, natural_seqs, key=...)` samples the model (`jaxpotts.sampling.sample`, or takes
sequences generated elsewhere) and compares the generated sequences with the natural ones,
reweighted with the DCA sequence weights (`jaxpotts.msa.sequence_weights`, identity threshold
0.8, computed separately on the training and the held-out part):

* one-site frequencies $f_i(a)$, all i, a;
* connected two-site correlations $C_{ij}(a,b) = f_{ij}(a,b) - f_i(a) f_j(b)$, all $i < j$ and
  all colour pairs;
* connected three-site correlations $C_{ijk}(a,b,c)$ (`jaxpotts.statistics.three_site_correlations`:
  the weighted third central moment of the one-hot variables) on a random subset of
  `n_triplets` entries drawn by `random_triplets`: three distinct sites uniformly at random
  (sorted, $i < j < k$) and, independently at each site, a colour drawn from the training
  set's $f_i$, so the subset favours the colours that occur (most of the $q^3$ colour triples
  of a site triplet are never seen and have $C_{ijk} = 0$ in every set). Duplicate entries are
  possible and kept. The same entries are compared in every set.

Each statistic is compared by Pearson r and the slope through the origin
(`jaxpotts.statistics.agreement`; the slope of the model's statistic against the natural one)
for three pairs: model against the training sequences, model against the held-out sequences,
and training against held-out sequences. The last is the noise floor: a model cannot be
expected to agree with the held-out set better than another sample of the family does.

It also reports

* PCA: principal axes of the weighted one-hot training sequences (the top eigenvectors of
  their covariance, which is $C_{ij}(a,b)$ with the diagonal blocks
  $C_{ii}(a,b) = f_i(a)\delta_{ab} - f_i(a)f_i(b)$, reshaped to $(Lq, Lq)$), onto which the
  training, held-out and generated sequences are projected: $y = (x - \mu)^\top V$;
* Hamming distance of each generated sequence to its nearest training sequence, with the
  held-out-to-training and the training-to-training (leave-one-out) distances as reference,
  for `n_hamming` random sequences of each set (`nearest_hamming`: one-hot products in chunks,
  memory O(chunk^2 + chunk L q));
* the model energies $E(s)$ (`jaxpotts.potts.energy`) of the three sets: a model whose samples
  sit at energies far from the natural sequences' does not generate the family;
* chain equilibration: the sampler's energy autocorrelation time tau (in recorded samples),
  ESS and split R-hat (`jaxpotts.diagnostics`, carried by `SampleResult`); the chains count as
  equilibrated when split R-hat < 1.1.

Nothing costs O(L^3 q^3): two-site statistics are O(M (Lq)^2) one-hot products in chunks
(`jaxpotts.statistics`), three-site ones O(M E) for E entries, PCA one partial eigendecomposition
of the (Lq, Lq) covariance. `write_report` writes validation.json, validation.md and the
figure (`jaxpotts.plotting.plot_validation`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._precision import einsum, matmul
from ._random import host_rng

__all__ = [
    "SAMPLER_DEFAULTS",
    "RHAT_EQUILIBRATED",
    "ValidationReport",
    "split_sequences",
    "random_triplets",
    "nearest_hamming",
    "principal_components",
    "project",
    "validate",
    "write_report",
]

#: Sampler settings of `validate` (`jaxpotts.sampling.sample` keywords): 1000 chains, 1000
#: burn-in sweeps, then 10 samples per chain 20 sweeps apart (10 per chain is the least the
#: tau / R-hat diagnostics need).
SAMPLER_DEFAULTS = {"n_chains": 1000, "n_burnin": 1000, "n_samples": 10, "thin": 20, "method": "gibbs"}

#: Split R-hat below which the chains count as equilibrated.
RHAT_EQUILIBRATED = 1.1

_HAMMING_CHUNK = 512
_COMPARISONS = (
    ("model_vs_train", "train", "model"),
    ("model_vs_test", "test", "model"),
    ("train_vs_test", "test", "train"),
)


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """What `validate` measured.

    Attributes:
        summary: JSON-ready numbers: ``agreement[statistic][comparison]`` (Pearson r and slope,
            statistic in ``site``, ``connected``, ``three_site``; comparison in
            ``model_vs_train``, ``model_vs_test``, ``train_vs_test``), ``pca``, ``hamming``,
            ``energy``, ``sampler`` (None for sequences generated elsewhere) and ``sizes``.
        arrays: numpy arrays for figures: ``<statistic>_<set>`` (set in train, test, model;
            two-site ones flattened over $i < j$), ``pca_<set>`` (M, 2), ``hamming_<set>``,
            ``energy_<set>`` and ``energy_trace`` (n_chains, n_samples) when sampled.
    """

    summary: dict
    arrays: dict

    def markdown(self) -> str:
        """A plain-text / markdown summary: the agreement table, then one line per check."""
        from ._report import markdown_table

        s = self.summary
        rows = []
        for stat, label in (("site", "f_i(a)"), ("connected", "C_ij(a,b)"), ("three_site", "C_ijk(a,b,c)")):
            for comp, _, _ in _COMPARISONS:
                a = s["agreement"][stat].get(comp)
                if a is not None:
                    rows.append({"statistic": label, "comparison": comp.replace("_", " "), **a})
        lines = ["# Validation of the model as a generator of its family", ""]
        lines += [markdown_table(rows, ["statistic", "comparison", "pearson", "slope"]), ""]
        sizes = s["sizes"]
        lines.append(
            f"sequences: {sizes['train']} training (M_eff {sizes['train_m_eff']:.1f}), {sizes['test']} held-out, "
            f"{sizes['model']} generated; L = {sizes['L']}, q = {sizes['q']}; {sizes['triplets']} three-site entries"
        )
        names = {"model": "generated", "test": "held-out", "train": "training (leave-one-out)"}
        h = s["hamming"]
        lines.append(
            "nearest training sequence, mean Hamming distance / L: "
            + ", ".join(f"{names[k]} {v['mean_fraction']:.3f}" for k, v in h.items() if v is not None)
        )
        e = s["energy"]
        lines.append(
            "model energy, mean (std): "
            + ", ".join(
                f"{names[k].split()[0]} {v['mean']:.2f} ({v['std']:.2f})" for k, v in e.items() if v is not None
            )
        )
        pca = s["pca"]
        lines.append(
            f"PCA: the first two axes explain {pca['explained_fraction'][0]:.3f} and {pca['explained_fraction'][1]:.3f} of the training variance"
        )
        if s["sampler"] is not None:
            m = s["sampler"]
            lines.append(
                f"chains: {m['n_chains']} x {m['n_samples']} samples after {m.get('n_burnin', '?')} sweeps; energy tau = "
                f"{m['tau']:.2f} samples, split R-hat = {m['rhat']:.3f}, ESS = {m['ess']:.0f}: "
                + ("equilibrated" if m["equilibrated"] else "NOT equilibrated (R-hat >= 1.1 or undefined)")
            )
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- building blocks


def split_sequences(
    key: PRNGKeyArray, M: int, test_fraction: float
) -> tuple[Int[np.ndarray, " M_train"], Int[np.ndarray, " M_test"]]:
    r"""Random train / held-out split of M sequences: ``round(test_fraction * M)`` held out.

    The indices come from one permutation of M drawn by a generator seeded with the key's
    bits, so the same key gives the same split. Returns the sorted training and held-out indices. Raises ValueError when either part
    would be empty.
    """
    if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 1:
        raise ValueError(f"M must be a positive integer, got {M!r}")
    if not (isinstance(test_fraction, (int, float, np.floating)) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    n_test = int(round(test_fraction * M))
    if n_test == 0:
        raise ValueError(f"empty test set: test_fraction = {test_fraction} of {M} sequences holds out none")
    if n_test == M:
        raise ValueError(f"empty training set: test_fraction = {test_fraction} of {M} sequences holds out all")
    perm = host_rng(key).permutation(M)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def random_triplets(
    key: PRNGKeyArray, site_frequencies: Float[Array, "L q"], n: int
) -> tuple[Int[np.ndarray, "n 3"], Int[np.ndarray, "n 3"]]:
    r"""`n` entries $(i<j<k;\ a, b, c)$ for the three-site correlations (module docstring):
    three distinct sites uniformly at random, sorted, and at each site a colour drawn from
    ``site_frequencies`` ($f_i$ of the natural training sequences). Returns (sites, colours)."""
    f = np.asarray(site_frequencies, np.float64)
    if f.ndim != 2 or f.shape[0] < 3:
        raise ValueError(f"site_frequencies must have shape (L, q) with L >= 3, got {f.shape}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    L = f.shape[0]
    # Three distinct sites, uniformly: r0 in 0..L-1, r1 in 0..L-2 and r2 in 0..L-3, each shifted
    # past the sites already taken (in increasing order), which maps the draws one-to-one onto
    # ordered triples of distinct sites.
    rng = host_rng(key)
    r = rng.integers(0, [L, L - 1, L - 2], size=(n, 3))
    i = r[:, 0]
    j = r[:, 1] + (r[:, 1] >= i)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    k = r[:, 2] + (r[:, 2] >= lo)
    k = k + (k >= hi)
    sites = np.sort(np.stack([i, j, k], axis=1), axis=1)
    # Colours by inverse CDF of f_i at each site.
    cdf = np.cumsum(f / f.sum(1, keepdims=True), axis=1)[sites]  # (n, 3, q)
    u = rng.random((n, 3))
    colours = np.minimum((cdf < u[..., None]).sum(-1), f.shape[1] - 1)
    return sites.astype(np.int32), colours.astype(np.int32)


@partial(jax.jit, static_argnames=("q", "chunk"))
def _nearest_identity(queries, references, exclude, n_ref, *, q: int, chunk: int):
    nq, nr = queries.shape[0] // chunk, references.shape[0] // chunk
    R = jax.nn.one_hot(references, q, dtype=jnp.float32).reshape(nr, chunk, -1)
    ref_index = jnp.arange(nr * chunk).reshape(nr, chunk)

    def per_query_chunk(xs):
        sq, ex = xs
        Xq = jax.nn.one_hot(sq, q, dtype=jnp.float32).reshape(chunk, -1)

        def step(best, ys):
            Xr, idx = ys
            same = matmul(Xq, Xr.T)  # identities: exact small integers
            skip = (idx[None, :] == ex[:, None]) | (idx[None, :] >= n_ref)
            return jnp.maximum(best, jnp.max(jnp.where(skip, -1.0, same), axis=1)), None

        best, _ = jax.lax.scan(step, jnp.full((chunk,), -1.0), (R, ref_index))
        return best

    return jax.lax.map(per_query_chunk, (queries.reshape(nq, chunk, -1), exclude.reshape(nq, chunk))).reshape(-1)


def nearest_hamming(
    queries: Int[Array, "N L"],
    references: Int[Array, "M L"],
    q: int,
    *,
    exclude: Int[Array, " N"] | None = None,
) -> Int[np.ndarray, " N"]:
    r"""Hamming distance of each query to its nearest reference, $\min_n \sum_i [s_i \ne r^n_i]$.

    ``exclude[m]`` (optional) is the index of a reference that query m must skip (itself, for
    leave-one-out distances within one set), or -1. The identities $\sum_i [s_i = r_i]$ are
    one-hot products in chunks of 512 x 512 sequences (a jitted `lax.map` over query chunks,
    `lax.scan` over reference chunks): memory O(512^2 + 512 L q), time O(N M L q).
    """
    s, r = np.asarray(queries), np.asarray(references)
    if s.ndim != 2 or r.ndim != 2 or s.shape[1] != r.shape[1] or 0 in s.shape or r.shape[0] == 0:
        raise ValueError(
            f"queries (N, L) and references (M, L) must share L and be non-empty, got {s.shape} and {r.shape}"
        )
    ex = np.full(s.shape[0], -1) if exclude is None else np.asarray(exclude)
    if ex.shape != (s.shape[0],):
        raise ValueError(f"exclude must have shape (N,) = ({s.shape[0]},), got {ex.shape}")
    if r.shape[0] == 1 and np.any(ex == 0):
        raise ValueError("the only reference sequence is excluded: no nearest neighbour is left")
    c = _HAMMING_CHUNK
    pad_q, pad_r = -s.shape[0] % c, -r.shape[0] % c
    best = _nearest_identity(
        jnp.asarray(np.concatenate([s, np.zeros((pad_q, s.shape[1]), s.dtype)]), jnp.int32),
        jnp.asarray(np.concatenate([r, np.zeros((pad_r, r.shape[1]), r.dtype)]), jnp.int32),
        jnp.asarray(np.concatenate([ex, np.full(pad_q, -1)]), jnp.int32),
        r.shape[0],
        q=int(q),
        chunk=c,
    )
    return (s.shape[1] - np.asarray(best)[: s.shape[0]]).astype(np.int32)


def principal_components(
    mean: Float[Array, "L q"], covariance: Float[Array, "L L q q"], n_components: int = 2
) -> tuple[Float[np.ndarray, "L q k"], Float[np.ndarray, " k"], Float[np.ndarray, " k"]]:
    r"""Principal axes of one-hot sequences from their (weighted) mean and covariance.

    ``covariance`` is $C_{ij}(a,b)$ with diagonal blocks (`jaxpotts.statistics.summary_statistics`'s
    ``connected``), i.e. $\Sigma = \frac1W \sum_m w_m (x_m - \mu)(x_m - \mu)^\top$ for one-hot
    $x_m \in \{0,1\}^{Lq}$; its top `n_components` eigenvectors (float64, `scipy.linalg.eigh`)
    are the axes $V$, each signed so that its largest-magnitude entry is positive. Returns
    (axes (L, q, k), variances (k,) = the eigenvalues, explained fractions (k,) = eigenvalue /
    trace).
    """
    from scipy.linalg import eigh

    C = np.asarray(covariance, np.float64)
    if C.ndim != 4 or C.shape[0] != C.shape[1] or C.shape[2] != C.shape[3]:
        raise ValueError(f"covariance must have shape (L, L, q, q), got {C.shape}")
    L, q = C.shape[0], C.shape[2]
    if np.shape(mean) != (L, q):
        raise ValueError(f"mean must have shape (L, q) = ({L}, {q}), got {np.shape(mean)}")
    K = L * q
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or not 1 <= n_components <= K:
        raise ValueError(f"n_components must be an integer in 1..{K}, got {n_components!r}")
    S = C.transpose(0, 2, 1, 3).reshape(K, K)
    S = 0.5 * (S + S.T)
    values, vectors = eigh(S, subset_by_index=[K - n_components, K - 1])
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(n_components)])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    total = np.trace(S)
    return vectors.reshape(L, q, n_components), values, values / total if total > 0 else values * np.nan


@jax.jit
def _project(seqs, mean, axes):
    L = seqs.shape[1]
    offset = einsum("ia,iak->k", mean, axes)
    return jax.lax.map(lambda s: axes[jnp.arange(L), s].sum(0) - offset, seqs, batch_size=1024)


def project(
    seqs: Int[Array, "M L"], mean: Float[Array, "L q"], axes: Float[Array, "L q k"]
) -> Float[np.ndarray, "M k"]:
    r"""Coordinates $y_m = (x_m - \mu)^\top V$ of one-hot sequences on principal axes $V$
    (`principal_components`), by gathering $V_i(s_i)$ (no one-hot matrix)."""
    axes = np.asarray(axes)
    s = np.asarray(seqs)
    if s.ndim != 2 or axes.ndim != 3 or s.shape[1] != axes.shape[0] or np.shape(mean) != axes.shape[:2]:
        raise ValueError(
            f"seqs (M, L), mean (L, q) and axes (L, q, k) do not fit: {s.shape}, {np.shape(mean)}, {axes.shape}"
        )
    dtype = jnp.result_type(float)
    return np.asarray(_project(jnp.asarray(s, jnp.int32), jnp.asarray(mean, dtype), jnp.asarray(axes, dtype)))


@eqx.filter_jit
def _energies(model, seqs):
    from .potts import energy

    return jax.lax.map(lambda s: energy(model, s), seqs, batch_size=256)


# ----------------------------------------------------------------------------- validate


def _as_sequences(x: Any, L: int, q: int, name: str) -> np.ndarray:
    s = np.asarray(x)
    if s.ndim == 3:  # (chains, samples, L) as `sample` returns them
        s = s.reshape(-1, s.shape[-1])
    if s.ndim != 2:
        raise ValueError(f"{name} must have shape (M, L), got {s.shape}")
    if s.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one sequence is needed")
    if not np.issubdtype(s.dtype, np.integer):
        raise TypeError(f"{name} must hold integer colours, got dtype {s.dtype}")
    if s.shape[1] != L:
        raise ValueError(f"{name} have L = {s.shape[1]} sites but the model has L = {L}")
    if s.min() < 0 or s.max() >= q:
        raise ValueError(f"{name} contain colours {s.min()}..{s.max()} but the model has q = {q} (colours 0..{q - 1})")
    return s.astype(np.int32)


def _weights(w: Any, rows: np.ndarray | None, seqs: np.ndarray, q: int, name: str) -> np.ndarray:
    """Given weights (sliced to `rows`), else the DCA weights at identity threshold 0.8."""
    from .losses import check_weights
    from .msa import sequence_weights

    if w is None:
        return np.asarray(sequence_weights(seqs, 0.8, q=q), np.float64)
    w = np.asarray(w, np.float64)
    w = w if rows is None else w[rows]
    try:
        check_weights(w, seqs.shape[0])
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    return w


def _natural_sets(natural, weights, test, test_weights, test_fraction, key, L, q) -> dict:
    """{"train": (seqs, weights), "test": (seqs, weights) or None} after the split."""
    natural = _as_sequences(natural, L, q, "natural_seqs")
    if test is not None and test_fraction:
        raise ValueError("give test_seqs or test_fraction, not both")
    if test_weights is not None and test is None:
        raise ValueError("test_weights given without test_seqs")
    if weights is not None and np.shape(weights) != (natural.shape[0],):
        raise ValueError(f"weights must have shape (M,) = ({natural.shape[0]},), got {np.shape(weights)}")
    rows = None
    if test_fraction:
        rows, test_rows = split_sequences(key, natural.shape[0], test_fraction)
        test = natural[test_rows]
        test_weights = None if weights is None else np.asarray(weights)[test_rows]
        natural = natural[rows]
    sets = {"train": (natural, _weights(weights, rows, natural, q, "weights"))}
    if test is None:
        sets["test"] = None
    else:
        test = _as_sequences(test, L, q, "test_seqs")
        sets["test"] = (test, _weights(test_weights, None, test, q, "test_weights"))
    return sets


def _generate(model, key, generated, sampler: dict | None, max_memory) -> tuple[np.ndarray, dict | None, Any]:
    """Generated sequences (N, L), the sampler's summary (None for plain sequences) and the
    energy trace (n_chains, n_samples) of a `SampleResult`."""
    from .sampling import SampleResult, sample

    info = {}
    if generated is None:
        settings = {**SAMPLER_DEFAULTS, **(sampler or {})}
        t0 = time.perf_counter()
        generated = sample(model, key, max_memory=max_memory, **settings)
        info = {"n_burnin": settings["n_burnin"], "thin": settings["thin"], "seconds": time.perf_counter() - t0}
    elif sampler:
        raise ValueError("sampler settings apply when validate samples the model, not to given sequences")
    if not isinstance(generated, SampleResult):
        return _as_sequences(generated, model.L, model.q, "generated"), None, None
    summary = {**generated.summary(), **info}
    summary["equilibrated"] = bool(math.isfinite(summary["rhat"]) and summary["rhat"] < RHAT_EQUILIBRATED)
    seqs = _as_sequences(generated.sequences, model.L, model.q, "generated")
    return seqs, summary, np.asarray(generated.energies)


def _compared_statistics(sets: dict, q: int, triplets) -> tuple[dict, dict]:
    """Per set, the flattened site, i<j connected and three-site statistics; and the training
    set's full statistics (for PCA)."""
    from .statistics import summary_statistics

    flat, train = {}, None
    for name, value in sets.items():
        if value is None:
            continue
        st = summary_statistics(value[0], q, value[1], triplets=triplets)
        iu, ju = np.triu_indices(st["site"].shape[0], 1)
        flat[name] = {
            "site": st["site"].ravel(),
            "connected": st["connected"][iu, ju].ravel(),
            "three_site": st["three_site"],
        }
        if name == "train":
            train = st
    return flat, train


def _hamming(sets: dict, q: int, n: int, key) -> tuple[dict, dict]:
    """Nearest-training-sequence distances of up to n random sequences of each set."""
    train = sets["train"][0]
    summary, arrays = {}, {}
    for i, name in enumerate(("model", "test", "train")):
        if sets.get(name) is None:
            summary[name] = None
            continue
        seqs = sets[name][0]
        rows = np.sort(host_rng(key, i).permutation(seqs.shape[0])[:n])
        if name == "train" and seqs.shape[0] < 2:
            summary[name] = None
            continue
        d = nearest_hamming(seqs[rows], train, q, exclude=rows if name == "train" else None)
        arrays[f"hamming_{name}"] = d
        L = seqs.shape[1]
        summary[name] = {
            "n": int(d.size),
            "mean": float(d.mean()),
            "median": float(np.median(d)),
            "min": int(d.min()),
            "mean_fraction": float(d.mean() / L),
        }
    return summary, arrays


def _moments_1d(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def validate(
    model: Any,
    natural_seqs: Int[Array, "M L"],
    *,
    key: PRNGKeyArray,
    weights: Float[Array, " M"] | None = None,
    test_seqs: Int[Array, "M_test L"] | None = None,
    test_weights: Float[Array, " M_test"] | None = None,
    test_fraction: float = 0.0,
    generated: Any = None,
    sampler: dict | None = None,
    n_triplets: int = 50_000,
    n_hamming: int = 2000,
    max_memory: Any = None,
) -> ValidationReport:
    r"""Validate `model` as a generative model of `natural_seqs` (module docstring).

    Args:
        model: a Potts model or a layer with ``to_potts`` (attention); non-symmetric couplings
            are made joint, $\tfrac12[J_{ij}(a,b) + J_{ji}(b,a)]$ (`jaxpotts.potts.joint_model`).
        natural_seqs: the natural sequences (M, L); with `test_fraction` they are split
            (`split_sequences`) into training and held-out parts.
        key: PRNG key, split for the split, the sampler, the three-site entries and the
            Hamming subsets.
        weights: sequence weights of `natural_seqs` (default: DCA weights at identity 0.8,
            computed on each part separately); `test_weights` likewise for `test_seqs`.
        test_seqs: held-out natural sequences (instead of `test_fraction`).
        generated: sequences to validate instead of sampling: (N, L), (chains, samples, L) or a
            `SampleResult` (whose diagnostics are reported).
        sampler: `jaxpotts.sampling.sample` keywords over `SAMPLER_DEFAULTS`.
        n_triplets: number of three-site entries (`random_triplets`).
        n_hamming: sequences per set whose nearest training sequence is searched.
        max_memory: budget of the up-front memory checks (`jaxpotts.memory.check_memory`).

    Returns:
        `ValidationReport`. Without held-out sequences the ``model_vs_test`` and
        ``train_vs_test`` comparisons are absent.
    """
    from .memory import check_memory, validation_estimate
    from .potts import joint_model
    from .statistics import agreement

    model = joint_model(model)
    L, q = model.L, model.q
    for value, name in ((n_triplets, "n_triplets"), (n_hamming, "n_hamming")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    k_split, k_sample, k_triplets, k_hamming = jax.random.split(key, 4)
    sets = _natural_sets(natural_seqs, weights, test_seqs, test_weights, test_fraction, k_split, L, q)
    check_memory(
        validation_estimate(L, q, n_triplets),
        f"validation statistics (L={L}, q={q}, {n_triplets} triplets)",
        max_memory,
    )
    generated, sampler_summary, trace = _generate(model, k_sample, generated, sampler, max_memory)
    sets["model"] = (generated, None)
    train_seqs, train_weights = sets["train"]
    # f_i(a) on the host (a bincount): only to draw the colours of the three-site entries
    counts = np.bincount((train_seqs + q * np.arange(L)).ravel(), weights=np.repeat(train_weights, L), minlength=L * q)
    triplets = random_triplets(k_triplets, counts.reshape(L, q), n_triplets)
    flat, train_stats = _compared_statistics(sets, q, triplets)
    summary = {"agreement": {}}
    for stat in ("site", "connected", "three_site"):
        summary["agreement"][stat] = {
            comp: agreement(flat[x][stat], flat[y][stat]) for comp, x, y in _COMPARISONS if x in flat and y in flat
        }
    arrays = {f"{stat}_{name}": v for name, d in flat.items() for stat, v in d.items()}
    axes, variances, explained = principal_components(train_stats["site"], train_stats["connected"], 2)
    summary["pca"] = {"variance": variances, "explained_fraction": explained}
    summary["energy"], summary["sizes"] = {}, {"L": L, "q": q, "triplets": int(n_triplets)}
    for name in ("train", "test", "model"):
        value = sets[name]
        summary["sizes"][name] = 0 if value is None else int(value[0].shape[0])
        if value is None:
            summary["energy"][name] = None
            continue
        y = project(value[0], train_stats["site"], axes)
        arrays[f"pca_{name}"] = y
        summary["pca"][name] = {"mean": y.mean(0), "std": y.std(0)}
        e = np.asarray(_energies(model, jnp.asarray(value[0])))
        arrays[f"energy_{name}"] = e
        summary["energy"][name] = _moments_1d(e)
    summary["sizes"]["train_m_eff"] = float(np.sum(sets["train"][1]))
    summary["sizes"]["test_m_eff"] = None if sets["test"] is None else float(np.sum(sets["test"][1]))
    summary["hamming"], ham_arrays = _hamming(sets, q, n_hamming, k_hamming)
    arrays.update(ham_arrays, triplet_sites=triplets[0], triplet_colours=triplets[1])
    if trace is not None:
        arrays["energy_trace"] = trace
    summary["sampler"] = sampler_summary
    return ValidationReport(summary=summary, arrays=arrays)


def write_report(report: ValidationReport, folder: str | Path, *, figure: bool = True) -> list[Path]:
    """Write ``validation.json`` (the summary, strict JSON), ``validation.md`` (`markdown`) and,
    with `figure`, ``validation.png/.pdf`` (`jaxpotts.plotting.plot_validation`) into `folder`,
    each atomically. Returns the written paths."""
    from . import plotting
    from ._files import write_json, write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        write_json(folder / "validation.json", report.summary),
        write_text(folder / "validation.md", report.markdown()),
    ]
    if figure:
        written += plotting.save_figure(plotting.plot_validation(report), folder / "validation.png")
    return written
