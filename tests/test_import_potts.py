"""`jaxpotts.serialization.import_potts`: another tool's parameters, in its alphabet order and
energy convention, as a `PottsModel` with the same energies; against a direct numpy energy sum,
and against adabmDCA's own energy function when adabmDCA is installed in a peer venv."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import enable_x64

from jaxpotts.msa import PROTEIN, Alphabet
from jaxpotts.potts import energy
from jaxpotts.serialization import import_potts

REPO = Path(__file__).resolve().parents[1]


def _direct_energy(h, J, symbols, seq: str) -> float:
    """E(s) = -sum_i h_i(s_i) - 1/2 sum_{i,j} J_ij(s_i, s_j), all ordered pairs (diagonal blocks
    included), with colour k = symbols[k]: the foreign convention, summed term by term."""
    s = [symbols.index(c) for c in seq]
    L = len(s)
    e = -sum(h[i, s[i]] for i in range(L))
    e -= 0.5 * sum(J[i, j, s[i], s[j]] for i in range(L) for j in range(L))
    return float(e)


def test_import_permutes_colours_and_keeps_every_energy():
    rng = np.random.default_rng(0)
    L, q = 6, PROTEIN.q
    symbols = "".join(rng.permutation(list(PROTEIN.symbols)))  # a foreign colour order
    h = rng.normal(size=(L, q))
    J = rng.normal(size=(L, L, q, q))  # not symmetric, non-zero diagonal blocks
    seqs = ["".join(rng.choice(list(PROTEIN.symbols), L)) for _ in range(30)] + ["-" * L, "W" * L]
    direct = [_direct_energy(h, J, symbols, s) for s in seqs]
    with enable_x64():
        model = import_potts(h, J, symbols, PROTEIN, dtype=np.float64)
        J_sym = np.asarray(model.couplings)
        np.testing.assert_array_equal(J_sym, J_sym.transpose(1, 0, 3, 2))
        assert not np.any(J_sym[np.arange(L), np.arange(L)])
        ours = [float(energy(model, PROTEIN.encode(s))) for s in seqs]
        np.testing.assert_allclose(ours, direct, rtol=1e-12, atol=1e-10)
        # Without the permutation the energies differ: the test can fail.
        wrong = import_potts(h, J, PROTEIN.symbols, PROTEIN, dtype=np.float64)
        assert abs(float(energy(wrong, PROTEIN.encode(seqs[0]))) - direct[0]) > 1e-3


@pytest.mark.parametrize(
    "symbols, alphabet, match",
    [
        ("-ACDEFGHIKLMNPQRSTVWX", PROTEIN, "letters of the alphabet"),
        ("-ACGU", PROTEIN, "q = 21"),
        (PROTEIN.symbols, "protein", "Alphabet"),
    ],
)
def test_import_refuses_mismatched_alphabets(symbols, alphabet, match):
    h, J = np.zeros((3, 21)), np.zeros((3, 3, 21, 21))
    with pytest.raises(ValueError, match=match):
        import_potts(h, J, symbols, alphabet)


def test_import_refuses_bad_shapes():
    with pytest.raises(ValueError, match="L, L, q, q"):
        import_potts(np.zeros((3, 5)), np.zeros((3, 5, 3, 5)), "-ACGU", Alphabet("-ACGU"))


def _peer_python() -> str | None:
    python = os.environ.get("JAXPOTTS_PEER_PYTHON") or (
        "/work/peer/bin/python" if Path("/work/peer").exists() else None
    )
    if python is None or not Path(python).exists():
        return None
    probe = subprocess.run([python, "-c", "import adabmDCA, torch"], capture_output=True, timeout=120)
    return python if probe.returncode == 0 else None


PEER = _peer_python()


@pytest.mark.skipif(PEER is None, reason="no adabmDCA peer venv (JAXPOTTS_PEER_PYTHON or /work/peer)")
def test_adabmdca_parameters_give_adabmdca_energies(tmp_path):
    """benchmarks/peers/run_adabmdca_bm.py trains adabmDCA's bmDCA for 2 updates on a tiny
    alignment and writes its parameters and its own energies of the training sequences; the
    imported model's energies equal them up to one additive constant (float32 rounding)."""
    rng = np.random.default_rng(1)
    L, M = 7, 40
    base = rng.integers(0, PROTEIN.q, L)
    lines = []
    for m in range(M):
        s = np.where(rng.random(L) < 0.4, rng.integers(0, PROTEIN.q, L), base)
        s[4] = s[1]  # a correlated pair, so the first update moves its couplings
        lines += [f">s{m}", PROTEIN.decode(s)]
    fasta = tmp_path / "tiny.fasta"
    fasta.write_text("\n".join(lines) + "\n")
    out = tmp_path / "adabm.npz"
    script = REPO / "benchmarks" / "peers" / "run_adabmdca_bm.py"
    proc = subprocess.run(
        [PEER, str(script), str(fasta), "--budget", "600", "--max-steps", "2", "--n-chains", "500", "--out", str(out),
         "--check-energies", "40"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads(out.with_suffix(".json").read_text())
    assert run["updates"] == 2 and run["stop_reason"] == "max_gradient_steps"
    data = np.load(out)
    assert np.abs(data["couplings"]).max() > 1e-4  # the couplings moved: the layout matters
    model = import_potts(data["fields"], data["couplings"], str(data["alphabet"]), PROTEIN)
    ours = np.array([float(energy(model, PROTEIN.encode(s))) for s in run["check"]["sequences"]])
    theirs = np.array(run["check"]["energies"])
    assert len(theirs) == M
    diff = ours - theirs
    np.testing.assert_allclose(diff, diff.mean(), atol=1e-4 * max(1.0, np.abs(theirs).max()))
    assert np.std(theirs) > 0.1  # the sequences' energies differ
    # adabmDCA's own [i, a, j, b] memory read as [i, j, a, b] gives other energies: the test can fail.
    misread = data["couplings"].transpose(0, 2, 1, 3).reshape(data["couplings"].shape)
    wrong = import_potts(data["fields"], misread, str(data["alphabet"]), PROTEIN)
    bad = np.array([float(energy(wrong, PROTEIN.encode(s))) for s in run["check"]["sequences"]]) - theirs
    assert np.ptp(bad) > 1e-3
