"""The `jaxpotts` command line, run in subprocesses on tiny inputs (plus --help in-process)."""

import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _subprocess import assert_figure, env, run

from jaxpotts import cli
from jaxpotts.training import load_model

SUBCOMMANDS = ("demo", "sample", "fit", "replica", "info")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("xla_cache")


def jp(args, cache, cwd, expect=0, timeout=300):
    """Run `python -m jaxpotts.cli ARGS`; check the exit status."""
    proc = run(["-m", "jaxpotts.cli", *args], cache, cwd, timeout=timeout)
    if expect is not None:
        assert proc.returncode == expect, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def sampled(tmp_path_factory, cache):
    """A small random factored model and its samples (jaxpotts sample)."""
    d = tmp_path_factory.mktemp("sampled")
    jp(
        [
            "sample",
            "--L",
            "6",
            "--q",
            "3",
            "--chains",
            "8",
            "--samples",
            "40",
            "--burnin",
            "20",
            "--thin",
            "2",
            "--seed",
            "3",
            "--out",
            d,
        ],
        cache,
        d,
    )
    return d


FIT_ARGS = ["--steps", "40", "--eval-every", "10", "--batch-size", "64", "--seed", "1"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, cache, sampled):
    """Factored attention fitted to the samples, compared with the generating model."""
    d = tmp_path_factory.mktemp("fitted")
    proc = jp(
        ["fit", "attention", sampled / "samples.npz", *FIT_ARGS, "--true-model", sampled / "model.eqx", "--out", d],
        cache,
        d,
    )
    return d, proc


# ----------------------------------------------------------------------------- help, info


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_of_every_subcommand_lists_the_common_options(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--seed", "--out", "--quiet", "--debug"):
        assert option in text, f"{command} --help does not mention {option}"


def test_top_level_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert command in text


def test_info_entry_point_prints_json(tmp_path, cache):
    """The installed `jaxpotts` script (next to the interpreter in a virtual environment)."""
    import subprocess

    exe = Path(sys.executable).with_name("jaxpotts")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "jaxpotts.cli"]
    proc = subprocess.run(
        [*argv, "info", "--json"], cwd=tmp_path, env=env(cache), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["backend"] == "cpu" and info["devices"] and "jax" in info and isinstance(info["x64"], bool)


# ----------------------------------------------------------------------------- sample


def test_sample_writes_samples_diagnostics_model_and_figure(sampled):
    data = np.load(sampled / "samples.npz")
    assert data["sequences"].shape == (8, 40, 6) and data["sequences"].dtype == np.int32
    assert data["energies"].shape == (8, 40) and int(data["q"]) == 3
    assert 0 <= data["sequences"].min() and data["sequences"].max() <= 2
    summary = json.loads((sampled / "sample.json").read_text())
    assert summary["n_chains"] == 8 and summary["n_samples"] == 40 and summary["q"] == 3
    assert summary["rhat"] is None or summary["rhat"] < 1.2
    model, hyper = load_model(sampled / "model.eqx")
    assert type(model).__name__ == "FactoredPotts" and model.L == 6 and hyper["random_model"] == "factored"
    assert_figure(sampled / "energy.png")


def test_sample_a_fitted_attention_model(fitted, cache, tmp_path):
    d, _ = fitted
    proc = jp(
        [
            "sample",
            "--model-file",
            d / "model.eqx",
            "--chains",
            "4",
            "--samples",
            "10",
            "--burnin",
            "5",
            "--out",
            tmp_path,
        ],
        cache,
        tmp_path,
    )
    assert "joint Potts model" in proc.stdout  # the attention layer is symmetrised before sampling
    assert np.load(tmp_path / "samples.npz")["sequences"].shape == (4, 10, 6)
    assert json.loads((tmp_path / "sample.json").read_text())["model_file"].endswith("model.eqx")
    assert not (tmp_path / "model.eqx").exists()
    assert_figure(tmp_path / "energy.png")


def test_sample_refuses_a_transformer_in_one_line(tmp_path, capsys):
    import jax

    from jaxpotts.attention import Transformer
    from jaxpotts.training import save_model

    save_model(tmp_path / "tr.eqx", Transformer(5, 3, 1, key=jax.random.PRNGKey(0), d_model=8, n_heads=2))
    assert cli.main(["sample", "--model-file", str(tmp_path / "tr.eqx"), "--out", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.endswith("(sample PottsModel, FactoredPotts or FactoredAttention models)")


# ----------------------------------------------------------------------------- fit


def test_fit_attention_saves_model_history_figures_and_compares_with_truth(fitted, sampled):
    d, proc = fitted
    model, hyper = load_model(d / "model.eqx")
    assert type(model).__name__ == "FactoredAttention" and model.n_heads == 1 and not model.softmax
    assert hyper["kind"] == "attention" and hyper["n_steps"] == 40
    history = json.loads((d / "history.json").read_text())
    assert history["step"] == [10, 20, 30, 40]
    assert history["train_loss"][-1] < history["train_loss"][0]
    summary = json.loads((d / "fit.json").read_text())
    assert summary["M"] == 320 and summary["L"] == 6 and summary["q"] == 3 and summary["steps"] == 40
    # the floor: the true model's MLM loss on the data, below log q; no fit beats it on held-out data
    assert 0 < summary["floor"] < np.log(3)
    assert summary["best_val_loss"] > summary["floor"] - 5 * summary["floor_stderr"]
    assert -1 <= summary["couplings"]["corr_J"] <= 1
    for name in ("loss_curve", "couplings"):
        assert_figure(d / f"{name}.png")
    assert (d / "checkpoint.ckpt").exists()
    assert "train_loss" in proc.stdout  # the human-readable table


def test_fit_transformer(sampled, cache, tmp_path):
    jp(
        [
            "fit",
            "transformer",
            sampled / "samples.npz",
            "--steps",
            "10",
            "--d-model",
            "8",
            "--heads",
            "2",
            "--d-mlp",
            "16",
            "--val-fraction",
            "0",
            "--out",
            tmp_path,
            "--quiet",
        ],
        cache,
        tmp_path,
    )
    model, hyper = load_model(tmp_path / "model.eqx")
    assert type(model).__name__ == "Transformer" and model.d_model == 8 and hyper["kind"] == "transformer"
    summary = json.loads((tmp_path / "fit.json").read_text())
    assert summary["steps"] == 10 and np.isfinite(summary["train_loss"]) and summary["val_loss"] is None
    assert summary["optimizer"] == "adam" and summary["loss"] == "stochastic"
    assert_figure(tmp_path / "loss_curve.png")


def test_resume_continues_to_the_same_result(fitted, sampled, cache, tmp_path):
    ref, _ = fitted
    short = [a if a != "40" else "20" for a in FIT_ARGS]
    jp(["fit", "attention", sampled / "samples.npz", *short, "--out", tmp_path, "--quiet"], cache, tmp_path)
    assert json.loads((tmp_path / "history.json").read_text())["step"] == [10, 20]
    jp(
        ["fit", "attention", sampled / "samples.npz", *FIT_ARGS, "--resume", "--out", tmp_path, "--quiet"],
        cache,
        tmp_path,
    )
    resumed, full = (json.loads((p / "history.json").read_text()) for p in (tmp_path, ref))
    assert resumed["step"] == full["step"] == [10, 20, 30, 40]
    np.testing.assert_array_equal(resumed["train_loss"], full["train_loss"])
    assert json.loads((tmp_path / "fit.json").read_text())["resumed"] is True
    a, _ = load_model(tmp_path / "model.eqx")
    b, _ = load_model(ref / "model.eqx")
    np.testing.assert_array_equal(np.asarray(a.weights), np.asarray(b.weights))
    # a resume with other settings is refused in one line
    proc = jp(
        ["fit", "attention", sampled / "samples.npz", *FIT_ARGS, "--l2", "0.5", "--resume", "--out", tmp_path],
        cache,
        tmp_path,
        expect=2,
    )
    assert "different l2" in _one_error_line(proc)


def test_fit_plm_on_an_alignment_with_sequence_weights(cache, tmp_path):
    rng = np.random.default_rng(0)
    letters = np.array(list("-ACDEFGHIKLMNPQRSTVWY"))
    base = rng.integers(0, 21, 8)
    lines = []
    for m in range(12):
        s = base.copy() if m < 6 else rng.integers(0, 21, 8)  # six identical sequences share one weight
        lines += [f">seq{m}", "".join(letters[s][:4]) + "ac" + "".join(letters[s][4:])]  # 'ac': insertions
    (tmp_path / "aln.fasta").write_text("\n".join(lines) + "\n")
    jp(["fit", "plm", "aln.fasta", "--steps", "5", "--out", "out", "--quiet"], cache, tmp_path)
    model, hyper = load_model(tmp_path / "out" / "model.eqx")
    assert type(model).__name__ == "PottsModel" and model.L == 8 and model.q == 21
    assert hyper["l2"] == pytest.approx(0.01 * 20 * 7 / 7.0)  # l2="auto": max(0.01, 0.01 (q-1)(L-1)/M_eff)
    summary = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert summary["format"] == "alignment" and summary["M"] == 12 and summary["L"] == 8 and summary["q"] == 21
    assert summary["optimizer"] == "lbfgs" and summary["steps"] <= 5 and np.isfinite(summary["train_loss"])
    assert summary["M_eff"] == pytest.approx(7.0)  # 6 copies count once, 6 distinct random sequences
    assert_figure(tmp_path / "out" / "loss_curve.png")


# ----------------------------------------------------------------------------- replica


def test_replica_curve_with_simulation_points(cache, tmp_path):
    jp(
        [
            "replica",
            "--alphas",
            "1",
            "3",
            "--lambdas",
            "1",
            "--simulate",
            "3",
            "--N",
            "40",
            "--seeds",
            "2",
            "--n-test",
            "1000",
            "--out",
            tmp_path,
            "--quiet",
        ],
        cache,
        tmp_path,
    )
    from jaxpotts import replica

    table = replica.read_csv(tmp_path / "curve.csv")
    assert list(table) == ["kind", *replica.TABLE_COLUMNS]
    assert table["alpha"].tolist() == [1.0, 3.0] and table["converged"].all()
    # docs/theory.md section 5's check (q = 3, U = I, rho = 9, lambda = 1, star): m, Q, test loss at alpha = 1 and 3
    np.testing.assert_allclose(table["m"], [1.301, 2.624], rtol=5e-3)
    np.testing.assert_allclose(table["Q"], [0.286, 0.912], rtol=5e-3)
    np.testing.assert_allclose(table["test_loss"], [0.8619, 0.6949], rtol=2e-3)
    meta = json.loads((tmp_path / "curve.json").read_text())
    assert meta["q"] == 3 and meta["U"] == np.eye(3).tolist() and meta["kinds"] == ["star"]
    (point,) = json.loads((tmp_path / "simulations.json").read_text())
    assert point["alpha"] == 3.0 and point["N"] == 40 and point["M"] == 120
    assert point["excess_loss_theory"] == pytest.approx(table["excess_loss"][1])
    assert abs(point["excess_loss"] - point["excess_loss_theory"]) < 0.1
    assert_figure(tmp_path / "replica.png")


def test_replica_colour_matrix_from_json_and_file(tmp_path):
    U, label = cli.replica.colour_matrix("[[1, 0], [0, 1]]", 2)
    np.testing.assert_array_equal(U, np.eye(2))
    np.save(tmp_path / "u.npy", 2 * np.eye(3))
    np.testing.assert_array_equal(cli.replica.colour_matrix(str(tmp_path / "u.npy"), 3)[0], 2 * np.eye(3))
    assert cli.replica.parse_grid(["0.1:10:3", "2"], "--alphas") == pytest.approx([0.1, 1.0, 2.0, 10.0])
    for bad in (["0"], ["a:b:c"], ["1:0.5:3"]):
        with pytest.raises(cli.UserError):
            cli.replica.parse_grid(bad, "--alphas")


# ----------------------------------------------------------------------------- errors


def _one_error_line(stderr) -> str:
    stderr = getattr(stderr, "stderr", stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("jaxpotts: error: ") and "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["sample", "--L", "0"], "--L: must be a positive integer"),  # argparse
        (["fit", "attention", "missing.npz"], "missing.npz does not exist"),  # input
    ],
)
def test_user_mistakes_in_a_subprocess_give_one_line_and_exit_2(args, words, cache, tmp_path):
    proc = jp([*args, "--out", tmp_path / "o"], cache, tmp_path, expect=2)
    assert words in _one_error_line(proc)


@pytest.mark.parametrize(
    "args, words",
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["fit", "plm", "data.npz", "--steps", "5", "--epochs", "2"], "give --steps or --epochs, not both"),
        (["fit", "attention", "bad.npz"], "has no 'sequences' array (keys: other)"),
        (["fit", "attention", "data.npz", "--q", "2"], "colours go up to 2, which needs q > 2, but q = 2"),
        (["replica", "--q", "2", "--U", "[[1, 2], [3, 1]]"], "U must be symmetric"),
        (["replica", "--U", "[[1, 0], [0, 1]]"], "--U must be a 3 x 3 matrix"),
        (["replica", "--alphas", "-1"], "--alphas must be finite and > 0"),
        (["sample", "--model-file", "nope.eqx"], "nope.eqx does not exist"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "data.npz", sequences=np.full((4, 3), 2, np.int32))
    np.savez(tmp_path / "bad.npz", other=np.zeros(3))
    with pytest.raises(SystemExit) if args == ["bogus"] else contextlib.nullcontext() as exc:
        code = cli.main([*args, "--out", str(tmp_path / "o")])
    assert (exc.value.code if args == ["bogus"] else code) == 2
    assert words in _one_error_line(capsys.readouterr().err)


def test_debug_raises_instead_of_one_line(tmp_path, capsys):
    with pytest.raises(cli.UserError, match="does not exist"):
        cli.main(["fit", "attention", str(tmp_path / "missing.npz"), "--debug"])


# ----------------------------------------------------------------------------- demo


def test_demo_quick_tells_the_whole_story_in_under_two_minutes(cache, tmp_path):
    t0 = time.perf_counter()
    proc = jp(["demo", "--quick", "--out", "demo"], cache, tmp_path, timeout=240)
    seconds = time.perf_counter() - t0
    assert seconds < 120, f"demo --quick took {seconds:.0f} s"
    out = tmp_path / "demo"
    report = json.loads((out / "demo.json").read_text())
    # two kernels, one distribution
    assert report["gibbs_vs_metropolis"]["energy_z"] < 5
    assert report["gibbs_vs_metropolis"]["max_marginal_diff"] < 0.1
    # the MLM loss is the pseudo-likelihood, to rounding
    for row in report["mlm_equals_pl"]:
        assert row["rel_diff"] < (1e-12 if row["dtype"] == "float64" else 1e-5), row
    # learned close to the floor, couplings recovered up to scale and gauge
    t = report["training"]
    assert 0 < t["excess_loss"] < 0.05 and t["test_loss"] < np.log(report["model"]["q"])
    assert report["couplings"]["corr_J"] > 0.9 and report["couplings"]["corr_U"] > 0.9
    # theory converged and simulations agree with it
    assert report["replica"]["all_converged"]
    for point in report["replica"]["simulations"]:
        assert abs(point["excess_loss"] - point["excess_loss_theory"]) < 0.05
    md = (out / "report.md").read_text()
    for name in ("energy_gibbs", "energy_metropolis", "losses", "couplings", "replica"):
        assert f"({name}.png)" in md
        assert_figure(out / f"{name}.png")
    assert "L * mlm_loss" in proc.stdout


# ----------------------------------------------------------------------------- contacts

PFAM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfam"


@pytest.mark.skipif(not (PFAM / "PF00014.fasta").exists(), reason="shared/data/pfam not present")
def test_contacts_on_a_pf00014_subsample(tmp_path, cache):
    from jaxpotts.msa import read_alignment

    aln = read_alignment(PFAM / "PF00014.fasta")
    keep = np.random.default_rng(0).choice(aln.M, 300, replace=False)
    path = tmp_path / "sub.fasta"
    path.write_text("".join(f">{aln.names[m]}\n{aln.alphabet.decode(aln.seqs[m])}\n" for m in keep))
    out = tmp_path / "c"
    proc = jp(
        [
            "contacts",
            path,
            "--distances",
            PFAM / "PF00014_struct.dat",
            "--steps",
            "30",
            "--generation-check",
            "--chains",
            "40",
            "--save-model",
            "--out",
            out,
        ],
        cache,
        tmp_path,
    )
    report = json.loads((out / "contacts.json").read_text())
    assert report["L"] == 53 and report["M"] == 300 and 0 < report["m_eff"] < 300
    assert set(report["precision"]) == {"L/5", "L/2", "L"} and report["precision"]["L/5"] >= 0.6
    assert -1 <= report["generation"]["connected"]["pearson"] <= 1
    assert "PPV@L/5" in proc.stdout and "memory estimate of the plm fit" in proc.stdout
    assert report["memory_estimate_bytes"] > 12 * 53**2 * 21**2 * 4
    rows = (out / "scores.csv").read_text().splitlines()
    assert rows[0] == "i,j,score,distance,contact" and len(rows) == 1 + 48 * 49 // 2  # pairs with j - i >= 5
    i, j = map(int, rows[1].split(",")[:2])
    assert 1 <= i and i + 5 <= j <= 53
    scores = np.load(out / "scores.npz")["scores"]
    assert scores.shape == (53, 53)
    from jaxpotts.contacts import read_ccmpred, read_ec

    np.testing.assert_allclose(read_ccmpred(out / "scores.mat"), scores, rtol=1e-15)
    ec = read_ec(out / "scores.ec")  # every pair, ranked, 1-based match columns, no focus letters
    assert len(ec["i"]) == 53 * 52 // 2 and set(ec["A_i"]) == {"-"}
    np.testing.assert_allclose(ec["score"], scores[ec["i"] - 1, ec["j"] - 1], atol=5e-7)
    assert_figure(out / "contact_map.png")
    assert (out / "model.eqx").exists()


def test_contacts_focus_numbers_the_outputs(tmp_path, monkeypatch):
    """--focus: the sites are the focus's columns, every output is numbered by its residues
    (F/5-11: A C - D e F G - H -> sites 5 6 7 9 10 11), distances are read per match column."""
    from jaxpotts.contacts import read_ccmpred, read_ec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.a2m").write_text(">F/5-11\nAC-DeFG-H\n>s1\nACKDFGLH\n>s2\nAK-DGG-H\n>s3\nGCKDFALH\n")
    D = 3.0 + np.abs(np.subtract.outer(np.arange(8), np.arange(8)))  # column k - k' -> 3 + |k - k'| A
    (tmp_path / "d.dat").write_text("".join(f"{i + 1} {j + 1} {D[i, j]}\n" for i in range(8) for j in range(i + 1, 8)))
    argv = ["contacts", "f.a2m", "--focus", "--distances", "d.dat", "--min-sep", "1", "--steps", "3"]
    assert cli.main([*argv, "--out", "o", "--quiet"]) == 0
    residues = [5, 6, 7, 9, 10, 11]
    scores = np.load(tmp_path / "o" / "scores.npz")["scores"]
    assert scores.shape == (6, 6)
    np.testing.assert_array_equal(read_ccmpred(tmp_path / "o" / "scores.mat"), scores)
    ec = read_ec(tmp_path / "o" / "scores.ec")
    site = {r: k for k, r in enumerate(residues)}
    assert len(ec["i"]) == 15 and set(ec["i"]) | set(ec["j"]) == set(residues)
    assert all("ACDFGH"[site[i]] == a for i, a in zip(ec["i"].tolist(), ec["A_i"].tolist(), strict=True))
    rows = (tmp_path / "o" / "scores.csv").read_text().splitlines()[1:]
    i, j, _, d, _ = rows[0].split(",")
    cols = [0, 1, 3, 4, 5, 7]
    assert (int(i), int(j)) == (ec["i"][0], ec["j"][0])
    assert float(d) == D[cols[site[int(i)]], cols[site[int(j)]]]


@pytest.mark.parametrize(
    "args, words",
    [
        (["contacts", "nope.fasta"], "nope.fasta does not exist"),
        (["contacts", "aln.fasta", "--heads", "4"], "--heads and --head-dim apply to --method attention"),
        (["contacts", "aln.fasta", "--method", "attention", "--couplings", "symmetric"], "--couplings applies"),
        (["contacts", "aln.fasta", "--distances", "nope.dat"], "nope.dat does not exist"),
    ],
)
def test_contacts_user_mistakes(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "aln.fasta").write_text(">a\nACDEFGHIK\n>b\nACDEFGHIL\n")
    assert cli.main([*args, "--out", str(tmp_path / "o")]) == 2
    assert words in _one_error_line(capsys.readouterr().err)


@pytest.mark.skipif(not (PFAM / "PF00014.fasta").exists(), reason="shared/data/pfam not present")
def test_contacts_cli_and_library_give_the_same_scores(tmp_path, cache):
    """`jaxpotts contacts X --seed s` == `jaxpotts.contacts.predict(X, key=PRNGKey(s))`, for the
    deterministic plmDCA and for attention, whose initialisation depends on the key."""
    import jax

    from jaxpotts import contacts
    from jaxpotts.msa import read_alignment

    aln = read_alignment(PFAM / "PF00014.fasta")
    keep = np.random.default_rng(1).choice(aln.M, 120, replace=False)
    path = tmp_path / "sub.fasta"
    path.write_text("".join(f">{aln.names[m]}\n{aln.alphabet.decode(aln.seqs[m])}\n" for m in keep))
    for method, extra in (
        ("plm", ["--steps", "8"]),
        ("attention", ["--steps", "4", "--heads", "2", "--head-dim", "3"]),
    ):
        out = tmp_path / method
        jp(["contacts", path, "--method", method, "--seed", "3", *extra, "--out", out, "--quiet"], cache, tmp_path)
        cli_scores = np.load(out / "scores.npz")["scores"]
        opts = dict(n_steps=8) if method == "plm" else dict(n_steps=4, n_heads=2, head_dim=3)
        lib = contacts.predict(path, method, key=jax.random.PRNGKey(3), progress=False, mesh=None, **opts)
        np.testing.assert_allclose(cli_scores, lib, rtol=2e-4, atol=1e-5)


def test_import_jaxpotts_exposes_the_subpackages():
    """Regression: `import jaxpotts` did not give jaxpotts.replica, .contacts, .msa."""
    import subprocess
    import sys

    code = "import jaxpotts as j; print(j.replica.solve, j.contacts.predict, j.msa.read_alignment, j.defaults.PLM)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr


def test_console_freezes_the_collector_and_returns_the_status(monkeypatch):
    """The `jaxpotts` command (`cli.console`) takes what exists before and after `main` out of
    the garbage collector's passes and exits with main's status."""
    import gc

    seen = []
    monkeypatch.setattr(cli, "main", lambda argv=None: seen.append(gc.get_freeze_count()) or 3)
    gc.unfreeze()
    try:
        assert cli.console() == 3
        assert seen[0] > 0 and gc.get_freeze_count() >= seen[0]
    finally:
        gc.unfreeze()


def test_benchmark_precision_from_written_scores_matches_the_cli(tmp_path):
    """benchmarks/contacts.py times `jaxpotts contacts` without --distances and scores the
    written scores.npz itself; on a focus alignment (a focus gap drops match column 3, so sites
    and match columns differ) its precision equals the CLI's own with --distances."""
    from _scripts import REPO, load_script

    bench = load_script("bench_contacts", REPO / "benchmarks" / "contacts.py")
    rng = np.random.default_rng(1)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    rows = letters[rng.integers(0, 20, (40, 14))]
    rows[0, 3] = "-"
    aln = tmp_path / "a.fasta"
    aln.write_text("".join(f">s{m}/1-{13 if m == 0 else 14}\n{''.join(r)}\n" for m, r in enumerate(rows)))
    dist = tmp_path / "d.dat"
    dist.write_text("".join(f"{i} {j} {rng.uniform(3, 15):.2f}\n" for i in range(1, 15) for j in range(i + 1, 15)))
    out = tmp_path / "out"
    status = cli.main(["contacts", str(aln), "--focus", "--distances", str(dist), "--out", str(out), "--quiet"])
    assert status == 0
    report = json.loads((out / "contacts.json").read_text())
    assert np.load(out / "scores.npz")["columns"].tolist() == [0, 1, 2, *range(4, 14)]
    assert bench._written_precision(out / "scores.npz", dist) == report["precision"]
