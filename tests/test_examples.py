"""The examples run as scripts and write their figures: `--smoke` in the default suite (the whole
pipeline on tiny settings), `--quick` (a few minutes each on 2 CPU cores) under `-m slow`."""

import csv
import json
import math

import pytest
from _subprocess import REPO, assert_figure, run

EXAMPLES = {
    "attention_vs_transformer.py": ["losses", "couplings"],
    "replica_vs_simulation.py": ["replica_vs_simulation", "replica_deviation_vs_N"],
    "protein_contacts.py": ["contacts_PF00014"],
    "sample_protein_model.py": ["statistics_PF00014"],
    "validate_model.py": ["validation_PF00014/validation"],
}
PROTEIN = {"protein_contacts.py", "sample_protein_model.py", "validate_model.py"}
needs_pfam = pytest.mark.skipif(
    not (REPO.parent / "shared" / "data" / "pfam" / "PF00014.fasta").exists(), reason="shared/data/pfam not present"
)
QUICK_ONLY = {"replica_vs_simulation.py": ["replica_optimal_vs_bayes"]}  # --smoke skips the Bayes study


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("xla_cache_examples")


def _run(script, mode, tmp_path, cache, timeout):
    out = tmp_path / "out"
    proc = run([REPO / "examples" / script, mode, "--out", out, "--quiet"], cache, tmp_path, timeout=timeout)
    assert proc.returncode == 0, f"{script} {mode} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out


def _check_outputs(script, out, figures):
    for name in figures:
        assert_figure(out / f"{name}.png")
    if script == "attention_vs_transformer.py":
        summary = json.loads((out / "results.json").read_text())
        assert 0 < summary["floor"] < summary["log_q"] == pytest.approx(math.log(summary["settings"]["q"]))
        for M in summary["settings"]["sizes"]:
            for r in summary["results"][str(M)]["models"].values():
                assert math.isfinite(r["test_loss"]) and r["test_loss"] > summary["floor"] - 0.1
        assert -1 <= summary["couplings"]["corr_J"] <= 1
    elif script == "protein_contacts.py":
        res = json.loads((out / "results.json").read_text())["results"]["PF00014"]
        for method in ("plm", "attention"):
            assert set(res[method]["precision"]) == {"L/5", "L/2", "L"} and res[method]["L"] == 53
        assert "| PF00014 |" in (out / "precision.md").read_text()
    elif script == "validate_model.py":
        summary = json.loads((out / "validation_PF00014" / "validation.json").read_text())
        agree = summary["agreement"]
        assert agree["site"]["model_vs_train"]["pearson"] > 0.5 and summary["sizes"]["test"] == 60
        assert set(agree["three_site"]) == {"model_vs_train", "model_vs_test", "train_vs_test"}
    elif script == "sample_protein_model.py":
        gen = json.loads((out / "generation.json").read_text())["PF00014"]
        assert -1 <= gen["connected"]["pearson"] <= 1 and gen["site"]["pearson"] > 0.5
    else:
        with open(out / "simulation_points.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert rows and all(abs(float(r["excess_loss"]) - float(r["excess_loss_theory"])) < 0.1 for r in rows)
        assert (out / "theory_curves.csv").stat().st_size > 0 and (out / "deviation_table.md").exists()


def _pfam(script):
    return pytest.param(script, marks=needs_pfam) if script in PROTEIN else script


@pytest.mark.parametrize("script", [_pfam(s) for s in sorted(EXAMPLES)])
def test_example_smoke(script, tmp_path, cache):
    out = _run(script, "--smoke", tmp_path, cache, timeout=300)
    _check_outputs(script, out, EXAMPLES[script])


@pytest.mark.slow
@pytest.mark.parametrize("script", [_pfam(s) for s in sorted(EXAMPLES)])
def test_example_quick(script, tmp_path, cache):
    out = _run(script, "--quick", tmp_path, cache, timeout=900)
    _check_outputs(script, out, EXAMPLES[script] + QUICK_ONLY.get(script, []))


@needs_pfam
def test_validate_model_smoke_with_a_bmdca_fit(tmp_path, cache):
    """`validate_model.py --method bm`: fit_boltzmann on the training 80%, then the same report."""
    out = tmp_path / "out"
    argv = [REPO / "examples" / "validate_model.py", "--smoke", "--method", "bm", "--out", out, "--quiet"]
    proc = run(argv, cache, tmp_path, timeout=300)
    assert proc.returncode == 0, f"validate_model.py --method bm failed:\n{proc.stderr[-3000:]}"
    assert_figure(out / "validation_PF00014" / "validation.png")
    summary = json.loads((out / "validation_PF00014" / "validation.json").read_text())
    assert summary["fit"]["method"] == "bm" and summary["fit"]["steps"] == 20  # the smoke recipe ran to its end
    assert summary["sizes"]["train"] == 240 and summary["sizes"]["test"] == 60
    assert summary["agreement"]["site"]["model_vs_train"]["pearson"] > 0.9  # the profile start's fields
