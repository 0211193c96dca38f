"""jaxpotts.plotting: every figure draws, is labelled, saves as non-empty PNG and PDF."""

import numpy as np
import pytest
from matplotlib.image import imread

from jaxpotts import plotting
from jaxpotts.evaluation import CouplingComparison
from jaxpotts.training import History


def _check(fig, tmp_path, name="fig", n_axes=None):
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    if n_axes is not None:
        assert len(axes) == n_axes
    for ax in axes:
        assert ax.get_xlabel().strip(), f"axes {ax.get_title()!r} has no x label"
        assert ax.get_ylabel().strip(), f"axes {ax.get_title()!r} has no y label"
        assert ax.has_data(), f"axes {ax.get_title()!r} is empty"
    paths = plotting.save_figure(fig, tmp_path / f"{name}.png")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    for p in paths:
        assert p.stat().st_size > 2000
    img = imread(paths[0])
    assert img.std() > 0.01  # not a blank canvas
    return axes


def test_save_figure_replaces_suffix_and_makes_folders(tmp_path):
    fig = plotting.plot_energy_diagnostics(np.random.default_rng(0).normal(size=(3, 50)))
    paths = plotting.save_figure(fig, tmp_path / "a" / "b" / "energy.whatever", formats=("png",))
    assert paths == [tmp_path / "a" / "b" / "energy.png"] and paths[0].exists()


def test_energy_diagnostics(tmp_path):
    rng = np.random.default_rng(0)
    e = np.cumsum(rng.normal(size=(4, 300)), axis=1) * 0.1 + rng.normal(size=(4, 300))
    axes = _check(plotting.plot_energy_diagnostics(e, title="t"), tmp_path, n_axes=2)
    assert "tau" in axes[1].get_title()
    with pytest.raises(ValueError, match="n_chains, n_samples"):
        plotting.plot_energy_diagnostics(np.zeros(10))


def test_coupling_comparison(tmp_path):
    rng = np.random.default_rng(1)
    J = rng.normal(size=(6, 6))
    J = (J + J.T) / 2
    np.fill_diagonal(J, 0)
    U = rng.normal(size=(3, 3))
    cmp = CouplingComparison(
        J_true=J,
        J_learned=J + 0.1 * rng.normal(size=J.shape),
        U_true=U,
        U_learned=U,
        corr_J=0.9,
        corr_U=1.0,
        rel_err_J=0.1,
        rel_err_couplings=0.12,
        asymmetry=0.0,
    )
    axes = _check(plotting.plot_coupling_comparison(cmp), tmp_path, n_axes=5)
    assert "corr J 0.900" in axes[-1].get_title()


def _history(n=5, val=True, test=True):
    step = np.arange(1, n + 1) * 10
    loss = 1.0 / np.arange(1, n + 1)
    nan = np.full(n, np.nan)
    return History(
        step=step,
        epoch=step / 10.0,
        train_loss=loss,
        val_loss=loss + 0.1 if val else nan,
        test_loss=loss + 0.2 if test else nan,
        objective=loss,
        step_loss=np.repeat(loss, 10),
    )


def test_loss_curves_from_history_and_json(tmp_path):
    h = _history()
    fig = plotting.plot_loss_curves({"fa": h, "json": h.to_dict()}, floor=0.5, floor_stderr=0.01, title="x")
    (ax,) = _check(fig, tmp_path)
    labels = [line.get_label() for line in ax.get_lines()]
    assert "fa, train" in labels and "json, test" in labels
    assert any("floor" in lab for lab in labels)
    # curves never recorded (NaN) are not drawn
    (ax,) = _check(plotting.plot_loss_curves({"plm": _history(val=False, test=False)}), tmp_path, "b")
    assert [line.get_label() for line in ax.get_lines()] == ["train"]
    with pytest.raises(ValueError, match="subset"):
        plotting.plot_loss_curves({"a": h}, which=("bogus",))


def test_loss_vs_size_and_model_comparison(tmp_path):
    sizes = [100, 200, 400]
    losses = {"fa": [0.7, 0.65, 0.62], "tr": [0.8, 0.75, 0.7]}
    _check(plotting.plot_loss_vs_size(sizes, losses, floor=0.6, floor_stderr=0.005), tmp_path, "a", n_axes=2)
    curves = {"fa": {"step": [10, 20], "test_loss": [0.7, 0.65]}, "tr": {"step": [10, 20], "test_loss": [0.9, 0.8]}}
    _check(
        plotting.plot_model_comparison(curves, sizes, losses, floor=0.6, floor_stderr=0.005), tmp_path, "b", n_axes=3
    )
    with pytest.raises(ValueError, match="values for 3 sizes"):
        plotting.plot_loss_vs_size(sizes, {"fa": [1.0]}, floor=0.5)


def _curve(lams=(0.5, 1.0)):
    alphas = np.geomspace(0.2, 20, 9)
    lam = np.repeat(lams, alphas.size)
    alpha = np.tile(alphas, len(lams))
    return {"lam": lam, "alpha": alpha, "excess_loss": 0.5 / (1 + alpha * lam), "m": alpha / (1 + alpha)}


def test_replica_curves_with_simulation_points(tmp_path):
    curves = {"star": _curve(), "independent": _curve()}
    sims = [dict(panel="star", lam=1.0, alpha=1.0, N=N, excess_loss=0.26, excess_loss_se=0.01) for N in (50, 100)]
    fig = plotting.plot_replica_curves(curves, sims, title="t")
    axes = _check(fig, tmp_path, n_axes=2)
    assert axes[0].get_yscale() == "log" and axes[0].get_xscale() == "log"
    assert len(axes[0].containers) == 2  # one error-bar container per N
    assert not axes[1].containers
    # a non-positive observable gets a linear axis; an odd number of panels hides the spare one
    curves3 = {k: {**_curve(), "m": _curve()["m"] - 0.5} for k in "abc"}
    axes = _check(plotting.plot_replica_curves(curves3, observable="m"), tmp_path, "b", n_axes=3)
    assert axes[0].get_yscale() == "linear"
    with pytest.raises(ValueError, match="without a curve"):
        plotting.plot_replica_curves(curves, [dict(sims[0], panel="nope")])
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_replica_curves({})


def test_replica_deviation_and_optimal_vs_bayes(tmp_path):
    names = ("excess_loss", "m", "Q", "train_loss")
    dev = [
        {"N": N, **{f"{k}_mean_abs_dev": 1.0 / N for k in names}, **{f"{k}_mean_abs_z": 1.0 for k in names}}
        for N in (100, 200, 400)
    ]
    _check(plotting.plot_replica_deviation(dev, noise_level=0.8), tmp_path, "a", n_axes=2)
    rows = [
        dict(
            scenario="q=3",
            kind=kind,
            alpha=a,
            lam_opt=0.5 / a,
            erm_excess_loss=0.3 / a,
            bayes_excess_loss=0.25 / a,
            erm_coupling_error=0.5 / a,
            bayes_coupling_error=0.4 / a,
        )
        for kind in ("star", "independent")
        for a in (0.5, 1.0, 2.0)
    ]
    axes = _check(plotting.plot_optimal_vs_bayes(rows), tmp_path, "b", n_axes=3)
    assert len(axes[0].get_lines()) == 4  # ERM and Bayes for each of the two scenarios
    with pytest.raises(ValueError, match="empty"):
        plotting.plot_replica_deviation([])
