r"""Matplotlib figures with readable defaults, shared by the command line and the examples.

Every function returns a `matplotlib.figure.Figure` built without pyplot (no global state, no
`plt.show`, nothing to close, works headless); `save_figure` writes it as PNG and PDF. Functions
that draw one panel accept `ax=` to compose larger figures.

=============================  ==========================================================
`plot_energy_diagnostics`      energy traces and energy autocorrelation of MCMC chains
`plot_coupling_comparison`     learned vs true $J_{ij}$ and colour matrix $U$ (up to scale and gauge)
`plot_loss_curves`             train / validation / test MLM loss against optimiser steps, with the floor
`plot_loss_vs_size`            test loss and excess loss over the floor against the training-set size
`plot_model_comparison`        both of the above side by side, for several models
`plot_replica_curves`          replica learning curves with simulation points and error bars
`plot_replica_deviation`       simulation - theory against the system size N
`plot_optimal_vs_bayes`        ERM at the optimal ridge against the Bayes-optimal error
`plot_validation`              a model as a generator: statistics, PCA, Hamming, energies
=============================  ==========================================================

The contact-map figure lives with the contact scores: `jaxpotts.contacts.plot_contact_map`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "save_figure",
    "plot_energy_diagnostics",
    "plot_coupling_comparison",
    "plot_loss_curves",
    "plot_loss_vs_size",
    "plot_model_comparison",
    "plot_replica_curves",
    "plot_replica_deviation",
    "plot_optimal_vs_bayes",
    "plot_validation",
]

_MARKERS = ("o", "s", "^", "D", "v", "P")


def _figure(figsize, **kwargs):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained", **kwargs)


def _colour(i: int) -> str:
    return f"C{i % 10}"


def _readable_log_ticks(axis) -> None:
    """Log-axis ticks at 1, 2, 5 x 10^k labelled as plain numbers (no overlapping minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def _null_locator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def save_figure(fig, path: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save `fig` next to `path` in each format (the suffix of `path` is replaced); returns the paths.
    Each file is written atomically (`jaxpotts._files.atomic_write`): never a truncated image."""
    from ._files import atomic_write

    path = Path(path)
    written = []
    for fmt in formats:
        out = path.with_suffix("." + fmt)
        atomic_write(out, lambda fh, fmt=fmt: fig.savefig(fh, format=fmt, dpi=150))
        written.append(out)
    return written


# ----------------------------------------------------------------------------- sampling


def plot_energy_diagnostics(energies, *, title: str = "", max_chains: int = 8, max_lag: int = 100):
    r"""Energy traces of a few chains (left) and the chain-averaged energy autocorrelation
    $\rho(t)$ with the integrated autocorrelation time $\tau = 1 + 2\sum_{t\ge1}\rho(t)$ (right).

    Args:
        energies: (n_chains, n_samples) energies of recorded samples.
    """
    from .diagnostics import MIN_DRAWS_TAU, autocorrelation, integrated_autocorrelation_time

    e = np.asarray(energies, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"energies must have shape (n_chains, n_samples), got {e.shape}")
    fig = _figure((10, 3.6))
    ax_trace, ax_acf = fig.subplots(1, 2)
    shown = min(max_chains, e.shape[0])
    for c in range(shown):
        ax_trace.plot(e[c], lw=0.8, alpha=0.8)
    ax_trace.set_xlabel("recorded sample")
    ax_trace.set_ylabel("energy E(s)")
    ax_trace.set_title("energy traces" + (f" ({shown} chains)" if e.shape[0] > 1 else ""))
    acf = np.asarray(autocorrelation(e)).mean(axis=0)
    lags = np.arange(min(max_lag, acf.size))
    ax_acf.axhline(0.0, color="0.6", lw=0.8)
    ax_acf.plot(lags, acf[: lags.size], color="C3")
    tau = float(integrated_autocorrelation_time(e)) if e.shape[1] >= 2 * MIN_DRAWS_TAU else float("nan")
    ax_acf.set_xlabel("lag (recorded samples)")
    ax_acf.set_ylabel("autocorrelation")
    ax_acf.set_title(f"energy autocorrelation, tau = {tau:.2f}")
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- validation

_MAX_SCATTER = 50_000  # points per scatter panel (a fixed random subset beyond that)


def _scatter_statistic(ax, report, stat: str, label: str) -> None:
    x, y = np.asarray(report.arrays[f"{stat}_train"]), np.asarray(report.arrays[f"{stat}_model"])
    if x.size > _MAX_SCATTER:
        keep = np.random.default_rng(0).choice(x.size, _MAX_SCATTER, replace=False)
        x, y = x[keep], y[keep]
    ax.scatter(x, y, s=3, alpha=0.3, linewidths=0, rasterized=True)
    lim = [min(x.min(), y.min()), max(x.max(), y.max())]
    ax.plot(lim, lim, color="0.4", lw=0.8)
    ax.set_xlabel(f"natural (training) {label}")
    ax.set_ylabel(f"generated {label}")
    agree = report.summary["agreement"][stat]
    title = f"r = {agree['model_vs_train']['pearson']:.3f}, slope = {agree['model_vs_train']['slope']:.2f}"
    if "model_vs_test" in agree:
        title += (
            f"\nheld-out: r = {agree['model_vs_test']['pearson']:.3f} (train vs held-out "
            f"{agree['train_vs_test']['pearson']:.3f})"
        )
    ax.set_title(title, fontsize=9)


def _histograms(ax, report, prefix: str, label: str, integer: bool) -> None:
    names = {"train": "natural (training)", "test": "natural (held-out)", "model": "generated"}
    values = {k: np.asarray(report.arrays[f"{prefix}_{k}"]) for k in names if f"{prefix}_{k}" in report.arrays}
    lo = min(v.min() for v in values.values())
    hi = max(v.max() for v in values.values())
    bins = np.arange(lo - 0.5, hi + 1.5) if integer and hi - lo < 200 else np.linspace(lo, hi, 50)
    for i, (k, v) in enumerate(values.items()):
        ax.hist(v, bins=bins, density=True, histtype="step", lw=1.2, color=_colour(i), label=names[k])
    ax.set_xlabel(label)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)


def plot_validation(report, *, title: str = ""):
    r"""The validation figure of `jaxpotts.generative.validate`, two rows of three panels:
    generated against natural (training) $f_i(a)$, $C_{ij}(a,b)$ ($i<j$) and the subset of
    $C_{ijk}(a,b,c)$ with the identity line, Pearson r and slope (and the held-out r with its
    train-vs-held-out floor); the sequences on the first two principal axes of the natural
    one-hot sequences; the Hamming distance to the nearest training sequence; and the model
    energies of the natural and generated sequences. Scatter panels show at most 50,000 points
    (a fixed random subset).

    Args:
        report: a `jaxpotts.generative.ValidationReport`.
    """
    fig = _figure((15, 9))
    axes = fig.subplots(2, 3)
    for ax, (stat, label) in zip(
        axes[0], (("site", "$f_i(a)$"), ("connected", "$C_{ij}(a,b)$"), ("three_site", "$C_{ijk}(a,b,c)$")), strict=True
    ):
        _scatter_statistic(ax, report, stat, label)
    ax = axes[1, 0]
    # generated first, so that the natural sequences stay visible on top
    for i, k, name in (
        (2, "model", "generated"),
        (0, "train", "natural (training)"),
        (1, "test", "natural (held-out)"),
    ):
        y = report.arrays.get(f"pca_{k}")
        if y is None:
            continue
        if y.shape[0] > _MAX_SCATTER:
            y = y[np.random.default_rng(1).choice(y.shape[0], _MAX_SCATTER, replace=False)]
        ax.scatter(y[:, 0], y[:, 1], s=3, alpha=0.25, linewidths=0, color=_colour(i), label=name, rasterized=True)
    frac = report.summary["pca"]["explained_fraction"]
    ax.set_xlabel(f"PC 1 ({100 * frac[0]:.1f}% of the natural variance)")
    ax.set_ylabel(f"PC 2 ({100 * frac[1]:.1f}%)")
    ax.legend(fontsize=8, markerscale=3)
    ax.set_title("principal components of the natural sequences", fontsize=9)
    _histograms(axes[1, 1], report, "hamming", "Hamming distance to the nearest training sequence", True)
    axes[1, 1].set_title("novelty (training: nearest other training sequence)", fontsize=9)
    _histograms(axes[1, 2], report, "energy", "model energy E(s)", False)
    sampler = report.summary.get("sampler")
    if sampler is not None:
        axes[1, 2].set_title(
            f"energies; chains: tau = {sampler['tau']:.2f} samples, split R-hat = {sampler['rhat']:.3f}", fontsize=9
        )
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- couplings


def plot_coupling_comparison(cmp, *, title: str = ""):
    r"""Learned against true couplings of a generalized Potts model, up to scale and gauge.

    Panels: true $J_{ij}$; learned attention (rescaled, symmetrised); true $U'$ and learned
    $V'$ (zero-sum gauge, unit norm); scatter of learned against true $J_{ij}$ off the diagonal
    with the identity line.

    Args:
        cmp: a `jaxpotts.evaluation.CouplingComparison` (from `compare_factored`).
    """
    fig = _figure((17, 3.6))
    axes = fig.subplots(1, 5, gridspec_kw=dict(width_ratios=[1, 1, 0.55, 0.55, 1]))
    vj = float(np.max(np.abs(cmp.J_true))) or 1.0
    for ax, mat, name in (
        (axes[0], cmp.J_true, "true $J_{ij}$"),
        (axes[1], cmp.J_learned, "learned $A_{ij}$ (rescaled, sym.)"),
    ):
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-vj, vmax=vj)
        ax.set_title(name)
        ax.set_xlabel("site j")
        ax.set_ylabel("site i")
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    vu = float(np.max(np.abs(cmp.U_true))) or 1.0
    for ax, mat, name in ((axes[2], cmp.U_true, "true $U'$"), (axes[3], cmp.U_learned, "learned $V'$")):
        ax.imshow(mat, cmap="RdBu_r", vmin=-vu, vmax=vu)
        ax.set_title(name + " (zero-sum, unit norm)", fontsize=9)
        q = mat.shape[0]
        ax.set_xticks(range(q))
        ax.set_yticks(range(q))
        ax.set_xlabel("colour b")
        ax.set_ylabel("colour a")
    off = ~np.eye(cmp.J_true.shape[0], dtype=bool)
    axes[4].scatter(cmp.J_true[off], cmp.J_learned[off], s=6, alpha=0.6)
    lim = [-vj * 1.1, vj * 1.1]
    axes[4].plot(lim, lim, "k--", lw=1)
    axes[4].set(
        xlabel="true $J_{ij}$", ylabel="learned (rescaled)", title=f"corr J {cmp.corr_J:.3f}, corr U {cmp.corr_U:.3f}"
    )
    fig.suptitle(title or f"couplings up to scale and gauge (rel. error of J_ij(a,b): {cmp.rel_err_couplings:.3f})")
    return fig


# ----------------------------------------------------------------------------- losses


def _history_arrays(history: Any) -> dict[str, np.ndarray]:
    """step, train_loss, val_loss, test_loss of a `History` or its `to_dict()` / JSON form."""
    get = history.get if isinstance(history, Mapping) else lambda k, d=None: getattr(history, k, d)
    out = {}
    for name in ("step", "train_loss", "val_loss", "test_loss"):
        v = get(name, None)
        out[name] = np.array([np.nan if x is None else x for x in (v if v is not None else [])], np.float64)
    return out


def plot_loss_curves(
    histories: Mapping[str, Any],
    *,
    floor: float | None = None,
    floor_stderr: float | None = None,
    which: Sequence[str] = ("train", "val", "test"),
    ax=None,
    title: str = "",
):
    r"""MLM loss (nats per site) against optimiser steps for one or several fits.

    Each model gets one colour; training loss dotted, validation dashed, test solid (only the
    curves that were recorded). `floor` draws the conditional entropy of the generating model,
    $\frac1L\sum_i \mathbb E[-\log p(s_i \mid s_{-i})]$, which no model can beat in expectation.

    Args:
        histories: label -> `jaxpotts.training.History` (or its `to_dict()` / JSON form).
        floor, floor_stderr: the entropy floor and its standard error (`evaluation.entropy_floor`).
        which: subset of ("train", "val", "test").
        ax: draw into this axes instead of a new figure.
    """
    styles = {"train": ":", "val": "--", "test": "-"}
    unknown = set(which) - set(styles)
    if unknown:
        raise ValueError(f"which must be a subset of {tuple(styles)}, got {sorted(unknown)}")
    if ax is None:
        fig = _figure((6.4, 4.2))
        ax = fig.subplots()
    else:
        fig = ax.figure
    for i, (label, history) in enumerate(histories.items()):
        h = _history_arrays(history)
        for kind in which:
            y = h[f"{kind}_loss"]
            if y.size and np.isfinite(y).any():
                ax.plot(
                    h["step"],
                    y,
                    styles[kind],
                    color=_colour(i),
                    label=f"{label}, {kind}" if len(histories) > 1 else kind,
                )
    if floor is not None:
        se = "" if floor_stderr is None else f" $\\pm$ {floor_stderr:.3f}"
        ax.axhline(floor, color="k", ls="--", lw=1, label=f"floor: conditional entropy {floor:.3f}{se}")
        if floor_stderr is not None:
            ax.axhspan(floor - floor_stderr, floor + floor_stderr, color="k", alpha=0.08, lw=0)
    ax.set_xlabel("optimiser steps")
    ax.set_ylabel("MLM loss (nats per site)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_loss_vs_size(
    sizes: Sequence[int],
    test_losses: Mapping[str, Sequence[float]],
    *,
    floor: float,
    floor_stderr: float | None = None,
    axes=None,
):
    r"""Test loss (left) and excess loss over the floor (right, log-log) against the number M
    of training sequences, one line per model.

    Args:
        sizes: the training-set sizes M.
        test_losses: label -> test loss at each size (nats per site).
        floor, floor_stderr: the entropy floor (`evaluation.entropy_floor`).
        axes: two axes to draw into instead of a new figure.
    """
    sizes = list(sizes)
    if axes is None:
        fig = _figure((10, 4))
        axes = fig.subplots(1, 2)
    ax_loss, ax_excess = axes
    fig = ax_loss.figure
    for i, (label, values) in enumerate(test_losses.items()):
        values = np.asarray(values, np.float64)
        if values.shape != (len(sizes),):
            raise ValueError(f"test_losses[{label!r}] has {values.size} values for {len(sizes)} sizes")
        ax_loss.plot(sizes, values, "o-", color=_colour(i), label=label)
        ax_excess.plot(sizes, values - floor, "o-", color=_colour(i), label=label)
    se = "" if floor_stderr is None else f" $\\pm$ {floor_stderr:.3f}"
    ax_loss.axhline(floor, color="k", ls="--", lw=1, label=f"floor {floor:.3f}{se}")
    ax_loss.set(
        xscale="log", xlabel="training-set size M", ylabel="test MLM loss (nats per site)", title="test loss against M"
    )
    ax_excess.set(
        xscale="log",
        yscale="log",
        xlabel="training-set size M",
        ylabel="test loss - floor (paired, same test set)",
        title="excess loss against M",
    )
    for ax in axes:
        ax.set_xticks(sizes, [str(M) for M in sizes])
        ax.xaxis.set_minor_locator(_null_locator())
        ax.grid(alpha=0.3)
    _readable_log_ticks(ax_excess.yaxis)
    ax_loss.legend(fontsize=8)
    return fig


def plot_model_comparison(
    histories: Mapping[str, Any],
    sizes: Sequence[int],
    test_losses: Mapping[str, Sequence[float]],
    *,
    floor: float,
    floor_stderr: float | None = None,
):
    """Several models trained on the same data: test-loss curves at the largest training set
    (left, `plot_loss_curves` with `which=("test",)`), test loss and excess loss against the
    training-set size (middle and right, `plot_loss_vs_size`); the entropy floor throughout.

    Args:
        histories: label -> History (or dict with ``step`` and ``test_loss``) at the largest M.
        sizes, test_losses: as in `plot_loss_vs_size` (same labels).
    """
    fig = _figure((15, 4.6))
    ax_curves, ax_loss, ax_excess = fig.subplots(1, 3)
    plot_loss_curves(
        histories,
        floor=floor,
        floor_stderr=floor_stderr,
        which=("test",),
        ax=ax_curves,
        title=f"M = {list(sizes)[-1]} training sequences",
    )
    ax_curves.set_ylabel("test MLM loss (nats per site)")
    plot_loss_vs_size(sizes, test_losses, floor=floor, floor_stderr=floor_stderr, axes=(ax_loss, ax_excess))
    ax_loss.get_legend().remove()
    return fig


# ----------------------------------------------------------------------------- replica


_OBSERVABLE_LABELS = {
    "excess_loss": "excess test loss",
    "test_loss": "test loss",
    "train_loss": "training loss",
    "coupling_error": r"coupling error $|\hat J - J^*|^2/|J^*|^2$",
    "m": r"overlap $m = \hat J \cdot J^*$",
    "Q": r"$Q = |\hat J|^2$",
    "entropy": "teacher conditional entropy",
}


def plot_replica_curves(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    simulations: Sequence[Mapping[str, Any]] = (),
    *,
    observable: str = "excess_loss",
    ncols: int = 2,
    logy: bool | None = None,
    title: str = "",
):
    r"""Replica learning curves against $\alpha = M/N$, one panel per scenario, one colour per
    $\lambda$, with finite-N simulation points (mean $\pm$ standard error over seeds; one
    marker per N, slightly offset in $\alpha$ so the error bars do not overlap).

    Args:
        curves: panel title -> table of `jaxpotts.replica.learning_curve` (needs the columns
            ``lam``, ``alpha`` and `observable`).
        simulations: rows with keys ``panel`` (a key of `curves`), ``lam``, ``alpha``, ``N``,
            `observable` and `observable` + ``"_se"`` (e.g. from `replica.simulate`).
        observable: the column to plot (default: excess loss = test loss - teacher entropy).
        ncols: panels per row.
        logy: log y axis (None: when every plotted value is positive).
    """
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    panels = list(curves)
    unknown = {r["panel"] for r in simulations} - set(panels)
    if unknown:
        raise ValueError(f"simulation rows refer to panels without a curve: {sorted(unknown)}")
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    fig = _figure((5.2 * ncols, 3.6 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, sharex=True)).ravel()
    lams = sorted({float(v) for table in curves.values() for v in np.asarray(table["lam"])})
    Ns = sorted({int(r["N"]) for r in simulations})
    values = [np.asarray(t[observable], np.float64) for t in curves.values()] + [
        np.array([r[observable] for r in simulations], np.float64)
    ]
    if logy is None:
        finite = np.concatenate([v[np.isfinite(v)] for v in values])
        logy = bool(finite.size) and bool(np.all(finite > 0))
    for ax, panel in zip(axes, panels, strict=False):
        table = curves[panel]
        lam_col, alpha_col = np.asarray(table["lam"], np.float64), np.asarray(table["alpha"], np.float64)
        for li, lam in enumerate(lams):
            sel = lam_col == lam
            if sel.any():
                order = np.argsort(alpha_col[sel])
                ax.plot(
                    alpha_col[sel][order],
                    np.asarray(table[observable], np.float64)[sel][order],
                    color=_colour(li),
                    lw=1.5,
                    label=f"theory, $\\lambda$ = {lam:g}",
                )
            for ni, N in enumerate(Ns):
                pts = [r for r in simulations if r["panel"] == panel and float(r["lam"]) == lam and int(r["N"]) == N]
                if not pts:
                    continue
                dx = 1 + 0.04 * (ni - (len(Ns) - 1) / 2)
                ax.errorbar(
                    [p["alpha"] * dx for p in pts],
                    [p[observable] for p in pts],
                    yerr=[p.get(observable + "_se", 0.0) for p in pts],
                    fmt=_MARKERS[ni % len(_MARKERS)],
                    ms=4,
                    color=_colour(li),
                    alpha=0.35 + 0.65 * (ni + 1) / len(Ns),
                    lw=1,
                    capsize=2,
                    label=f"simulation N = {N}" if li == 0 else None,
                )
        ax.set_xscale("log")
        _readable_log_ticks(ax.xaxis)
        if logy:
            ax.set_yscale("log")
            _readable_log_ticks(ax.yaxis)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel(r"$\alpha = M/N$")
        ax.set_ylabel(_OBSERVABLE_LABELS.get(observable, observable))
        ax.grid(alpha=0.3, which="both")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_replica_deviation(
    table: Sequence[Mapping[str, float]],
    *,
    observables: Sequence[tuple[str, str]] = (
        ("excess_loss", "excess loss (abs.)"),
        ("m", "m (rel.)"),
        ("Q", "Q (rel.)"),
        ("train_loss", "train loss (abs.)"),
    ),
    noise_level: float | None = None,
    noise_label: str = "pure noise",
):
    r"""How far simulation is from theory as N grows: mean $|\text{sim} - \text{theory}|$ (left,
    with $N^{-1/2}$ and $N^{-1}$ guides) and mean $|z|$, $z = (\text{sim} - \text{theory})/\text{stderr}$
    (right; `noise_level` draws what pure noise gives).

    Args:
        table: one row per N with keys ``N``, ``{name}_mean_abs_dev`` and ``{name}_mean_abs_z``.
        observables: (column name, legend label) pairs.
    """
    Ns = np.array([row["N"] for row in table], np.float64)
    if Ns.size == 0:
        raise ValueError("table is empty: nothing to plot")
    fig = _figure((9, 3.4))
    ax_dev, ax_z = fig.subplots(1, 2)
    for name, label in observables:
        ax_dev.plot(Ns, [row[f"{name}_mean_abs_dev"] for row in table], "o-", label=label)
        ax_z.plot(Ns, [row[f"{name}_mean_abs_z"] for row in table], "o-", label=label)
    ref = table[0][f"{observables[0][0]}_mean_abs_dev"]
    ax_dev.plot(Ns, ref * (Ns[0] / Ns) ** 0.5, "k:", lw=1, label=r"$\propto N^{-1/2}$")
    ax_dev.plot(Ns, ref * (Ns[0] / Ns), "k--", lw=1, label=r"$\propto N^{-1}$")
    ax_dev.set(xscale="log", yscale="log", xlabel="N", ylabel="mean |simulation - theory|")
    if noise_level is not None and math.isfinite(noise_level):
        ax_z.axhline(noise_level, color="k", lw=1, ls=":", label=f"{noise_label} ({noise_level:.2f})")
    ax_z.set(xscale="log", xlabel="N", ylabel="mean |z|,  z = (sim - theory) / stderr")
    for ax in (ax_dev, ax_z):
        _readable_log_ticks(ax.xaxis)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    _readable_log_ticks(ax_dev.yaxis)
    return fig


def plot_optimal_vs_bayes(rows: Sequence[Mapping[str, Any]]):
    r"""ERM at the test-loss-optimal ridge $\lambda^*(\alpha)$ (lines) against the Bayes-optimal
    estimator (stars): excess loss, coupling error and $\lambda^*$ against $\alpha$.

    Args:
        rows: keys ``scenario``, ``kind``, ``alpha``, ``lam_opt``, ``erm_excess_loss``,
            ``bayes_excess_loss``, ``erm_coupling_error``, ``bayes_coupling_error``; one line per
            (scenario, kind) in order of appearance; kind "star" solid, others dashed.
    """
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["kind"]), []).append(r)
    if not groups:
        raise ValueError("rows is empty: nothing to plot")
    fig = _figure((13, 3.8))
    axes = fig.subplots(1, 3)
    for si, ((label, kind), sel) in enumerate(groups.items()):
        a = [r["alpha"] for r in sel]
        c, ls = _colour(si), "-" if kind == "star" else "--"
        axes[0].plot(a, [r["erm_excess_loss"] for r in sel], ls, color=c, label=f"ERM, {label}, {kind}")
        axes[0].plot(a, [r["bayes_excess_loss"] for r in sel], ls, color=c, marker="*", ms=5, lw=0.8, alpha=0.7)
        axes[1].plot(a, [r["erm_coupling_error"] for r in sel], ls, color=c)
        axes[1].plot(a, [r["bayes_coupling_error"] for r in sel], ls, color=c, marker="*", ms=5, lw=0.8, alpha=0.7)
        axes[2].plot(a, [r["lam_opt"] for r in sel], ls, color=c)
    axes[0].set_ylabel("excess test loss")
    axes[1].set_ylabel(_OBSERVABLE_LABELS["coupling_error"])
    axes[2].set_ylabel(r"optimal $\lambda$ (test loss)")
    for ax in axes:
        ax.set(xscale="log", yscale="log", xlabel=r"$\alpha = M/N$")
        _readable_log_ticks(ax.xaxis)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=6)
    axes[0].set_title("lines: ERM at optimal $\\lambda$; stars: Bayes-optimal", fontsize=9)
    return fig
