"""`jaxpotts score` and `jaxpotts scan` (jaxpotts/_cli_mutations.py): subprocesses on tiny inputs."""

import csv
import json

import numpy as np
import pytest
from _subprocess import assert_figure, run

from jaxpotts import cli
from jaxpotts.msa import read_focus_alignment
from jaxpotts.mutations import independent_model, score_mutants, spearman

# Focus F/10-16 (residues A10 C11 D12 E13 f14 G15 H16), one focus-gap column: 6 sites of 7 match columns.
A2M = """>F/10-16
AC-DEfGH
>s2
ACWDE.GH
>s3
-CWDEkkGY
>s4
AD-DQ.GH
>s5
SC-NEGH
>s6
AC-DEGW
"""
TABLE = "mutant,score,note\nA10S,0.5,a\nC11D:E13Q,-1.0,b\nH16Y,0.2,\nE13Q,,d\nG15A,-0.3,e\n"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture
def files(tmp_path):
    (tmp_path / "aln.a2m").write_text(A2M)
    (tmp_path / "muts.csv").write_text(TABLE)
    return tmp_path


def jp(args, cache, cwd, expect=0):
    proc = run(["-m", "jaxpotts.cli", *args], cache, cwd)
    assert proc.returncode == expect, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def test_score_writes_predictions_and_spearman(files, cache):
    out = files / "o"
    proc = jp(["score", files / "aln.a2m", files / "muts.csv", "--method", "independent", "--out", out], cache, files)
    with open(out / "scores.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["mutant"] for r in rows] == ["A10S", "C11D:E13Q", "H16Y", "E13Q", "G15A"]
    assert rows[0]["note"] == "a" and rows[2]["note"] == ""  # the input columns are kept
    dE = np.array([float(r["dE"]) for r in rows])
    np.testing.assert_allclose([float(r["prediction"]) for r in rows], -dE)
    # the same numbers from the library (independent model, weights at 0.8 identity, pseudocount 0.5)
    from jaxpotts.msa import sequence_weights

    aln = read_focus_alignment(files / "aln.a2m")
    model = independent_model(aln.seqs, 21, np.asarray(sequence_weights(aln, 0.8)), pseudocount=0.5)
    expected = score_mutants(model, aln, [r["mutant"] for r in rows])
    np.testing.assert_allclose(dE, expected, rtol=1e-5, atol=1e-5)
    report = json.loads((out / "score.json").read_text())
    assert report["measured"] == "score" and report["n_measured"] == 4 and report["n_variants"] == 5
    y = np.array([0.5, -1.0, 0.2, -0.3])
    assert report["spearman"] == pytest.approx(spearman(-dE[[0, 1, 2, 4]], y), abs=1e-6)
    assert "Spearman rho(prediction, score)" in proc.stdout
    assert report["L"] == 6 and report["focus"] == "F/10-16"


def test_scan_and_score_with_a_saved_model(files, cache):
    # a plmDCA fit over all 7 match columns (as 'jaxpotts fit plm' writes it), scored on the focus's numbering
    from jaxpotts.msa import read_alignment
    from jaxpotts.training import fit_plm, save_model

    fit_out = files / "fit"
    model, _ = fit_plm(read_alignment(files / "aln.a2m").seqs, q=21, n_steps=3, progress=False)
    save_model(fit_out / "model.eqx", model, kind="plm")
    out = files / "scan"
    proc = jp(["scan", files / "aln.a2m", "--model-file", fit_out / "model.eqx", "--out", out], cache, files)
    assert "focus-gap columns are kept" in proc.stdout
    data = np.load(out / "scan.npz")
    assert data["dE"].shape == (7, 21)
    np.testing.assert_array_equal(data["residues"], [10, 11, -1, 12, 13, 15, 16])
    np.testing.assert_array_equal(data["dE"][np.arange(7), data["wild_type"]], 0.0)
    with open(out / "scan.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 * 19  # 6 residues x 19 substitutions (no gap, focus gap skipped)
    assert_figure(out / "scan.png")
    # scores of the same saved model agree with the scan
    sc = files / "score"
    jp(
        ["score", files / "aln.a2m", files / "muts.csv", "--model-file", fit_out / "model.eqx", "--out", sc, "--quiet"],
        cache,
        files,
    )
    with open(sc / "scores.csv") as fh:
        scored = {r["mutant"]: float(r["dE"]) for r in csv.DictReader(fh)}
    by_name = {r["mutant"]: float(r["dE"]) for r in rows}
    for m in ("A10S", "H16Y", "G15A"):
        assert scored[m] == pytest.approx(by_name[m], rel=1e-4, abs=1e-6)


def test_scan_fits_plm_by_default(files, cache):
    out = files / "s"
    jp(
        ["scan", files / "aln.a2m", "--steps", "3", "--include-gap", "--save-model", "--out", out, "--quiet"],
        cache,
        files,
    )
    report = json.loads((out / "scan.json").read_text())
    assert report["method"] == "plm" and report["L"] == 6 and report["n_mutants"] == 6 * 20
    assert report["options"]["l2"] == pytest.approx(0.01 * 20 * 5 / report["m_eff"])
    assert (out / "model.eqx").exists()


def test_unknown_drop_option_reaches_the_reader(files, monkeypatch, capsys):
    """--unknown drop (shared by fit, contacts, validate, score, scan) drops the sequence with an X."""
    monkeypatch.chdir(files)
    (files / "x.a2m").write_text(A2M.replace(">s5\nSC-NEGH", ">s5\nSC-NXGH"))
    out = files / "u"
    assert cli.main(["scan", "x.a2m", "--method", "independent", "--unknown", "drop", "--out", str(out)]) == 0
    assert "dropped 1 of 6 sequences" in capsys.readouterr().err  # the CLI shows the reader's warning
    report = json.loads((out / "scan.json").read_text())
    assert (report["M"], report["n_sequences_file"], report["unknown"]) == (5, 6, "drop")
    assert cli.main(["scan", "x.a2m", "--method", "independent", "--unknown", "error", "--out", str(out)]) == 2
    assert "unknown letter 'X' in sequence 's5'" in _one_error_line(capsys.readouterr().err)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("jaxpotts: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["score", "nope.a2m", "muts.csv"], "nope.a2m does not exist"),
        (["score", "aln.a2m", "nope.csv"], "nope.csv does not exist"),
        (["score", "aln.a2m", "muts.csv", "--mutant-column", "variant"], "no column 'variant'"),
        (["score", "aln.a2m", "muts.csv", "--measured", "fitness"], "no column 'fitness' for --measured"),
        (["score", "aln.a2m", "bad.csv", "--method", "independent"], "wild-type letter 'W' at residue 11"),
        (
            ["score", "aln.a2m", "muts.csv", "--method", "independent", "--l2", "1"],
            "--l2, --l2-fields, --steps and --gaps apply",
        ),
        (["score", "aln.a2m", "muts.csv", "--pseudocount", "1"], "--pseudocount applies to --method independent"),
        (["scan", "aln.a2m", "--focus", "nobody"], "no sequence named 'nobody'"),
        (["scan", "aln.a2m", "--gaps", "missing", "--include-gap"], "no gap state to score"),
        (["score", "aln.a2m", "muts.csv", "--method", "attention", "--couplings", "symmetric"], "--couplings applies"),
    ],
)
def test_user_mistakes(args, words, files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    (files / "bad.csv").write_text("mutant,score\nA10S,1\nW11A,2\n")
    assert cli.main([*args, "--out", str(files / "o")]) == 2
    assert words in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", ["score", "scan"])
def test_help_lists_the_common_and_model_options(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--seed", "--out", "--quiet", "--debug", "--model-file", "--method", "--focus", "--l2"):
        assert option in text, f"{command} --help does not mention {option}"
