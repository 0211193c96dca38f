"""Matplotlib figures with readable defaults. Every function returns a Figure; `save_figure`
writes it as PNG and PDF. Nothing here calls `plt.show`, so it works headless."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg") and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def save_figure(fig, path: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save `fig` next to `path` in each format (the suffix of `path` is replaced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        out = path.with_suffix("." + fmt)
        fig.savefig(out, dpi=150, bbox_inches="tight")
        written.append(out)
    return written


def plot_energy_diagnostics(energies, *, title: str = "", max_chains: int = 8, max_lag: int = 100):
    """Energy traces of a few chains (left) and the chain-averaged energy autocorrelation (right).

    Args:
        energies: (n_chains, n_samples) energies of recorded samples.
    """
    from .diagnostics import autocorrelation, integrated_autocorrelation_time

    plt = _pyplot()
    e = np.asarray(energies, dtype=np.float64)
    fig, (ax_trace, ax_acf) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for c in range(min(max_chains, e.shape[0])):
        ax_trace.plot(e[c], lw=0.8, alpha=0.8)
    ax_trace.set_xlabel("recorded sample")
    ax_trace.set_ylabel("energy E(s)")
    ax_trace.set_title("energy traces" + (f" ({min(max_chains, e.shape[0])} chains)" if e.shape[0] > 1 else ""))
    acf = np.asarray(autocorrelation(e)).mean(axis=0)
    lags = np.arange(min(max_lag, acf.size))
    ax_acf.axhline(0.0, color="0.6", lw=0.8)
    ax_acf.plot(lags, acf[: lags.size], color="C3")
    tau = float(integrated_autocorrelation_time(e)) if e.shape[1] >= 4 else float("nan")
    ax_acf.set_xlabel("lag (recorded samples)")
    ax_acf.set_ylabel("autocorrelation")
    ax_acf.set_title(f"energy autocorrelation, tau = {tau:.2f}")
    if title:
        fig.suptitle(title)
    return fig
