"""The catalogue of bad and unusual inputs (docs/inputs.md): every case gets either the correct
result (unusual but valid input: the same answer as the plain file) or one clear message naming
the problem; a command-line user never sees a traceback (`--debug` shows it).

Library cases run in-process; command-line cases run in one child process per group
(`_subprocess.run_cli_batch`: one JAX start-up for many command lines, each its own test), plus
real processes for the interrupt-and-resume and --debug tests.
"""

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _subprocess import env, run, run_cli_batch

import jaxpotts as jp
from jaxpotts import exact, memory, replica
from jaxpotts._files import atomic_write, read_checkpoint_meta, write_json
from jaxpotts.msa import PROTEIN, read_alignment, sequence_weights
from jaxpotts.serialization import load_checkpoint, load_model, save_model
from jaxpotts.training import fit_plm

# ----------------------------------------------------------------------------- the plain alignment

L_ALN, M_ALN = 9, 10
_rng = np.random.default_rng(18)
_COLOURS = _rng.integers(0, 21, (M_ALN, L_ALN))
_COLOURS[:, 2] = np.where(_rng.random(M_ALN) < 0.3, 0, _COLOURS[:, 2])
ROWS = ["".join(PROTEIN.symbols[c] for c in row) for row in _COLOURS]
NAMES = [f"seq{m}/1-{L_ALN}" for m in range(M_ALN)]
PLAIN = "".join(f">{n} description {m}\n{r}\n" for m, (n, r) in enumerate(zip(NAMES, ROWS, strict=False)))


def _wrapped(width=4):
    return "".join(
        f">{n}\n" + "\n".join(r[i : i + width] for i in range(0, len(r), width)) + "\n"
        for n, r in zip(NAMES, ROWS, strict=False)
    )


def _a2m():  # insert states: lower case and '.', different in every sequence
    out = []
    for m, (n, r) in enumerate(zip(NAMES, ROWS, strict=False)):
        ins = "ac"[: m % 3] + "." * (2 - m % 3)
        out.append(f">{n}\n{r[:3]}{ins}{r[3:]}{'.' * (m % 2)}\n")
    return "".join(out)


def _a3m():  # A3M: lower-case insertions, no '.', a '#' comment line first
    return "#A3M#\n" + "".join(
        f">{n}\n{r[:5]}{'kw'[: m % 3]}{r[5:]}\n" for m, (n, r) in enumerate(zip(NAMES, ROWS, strict=False))
    )


def _stockholm():
    w = max(map(len, NAMES)) + 2
    block1 = "".join(f"{n.ljust(w)}{r[:5]}\n" for n, r in zip(NAMES, ROWS, strict=False))
    block2 = "".join(f"{n.ljust(w)}{r[5:]}\n" for n, r in zip(NAMES, ROWS, strict=False))
    return f"# STOCKHOLM 1.0\n#=GF ID test\n\n{block1}#=GC SS_cons {'.' * 5}\n\n{block2}//\n"


SAME_AS_PLAIN = {
    "wrapped_fasta": lambda: _wrapped().encode(),
    "crlf_line_ends": lambda: PLAIN.replace("\n", "\r\n").encode(),
    "cr_line_ends": lambda: PLAIN.replace("\n", "\r").encode(),
    "utf8_bom": lambda: b"\xef\xbb\xbf" + PLAIN.encode(),
    "utf16_bom": lambda: PLAIN.encode("utf-16"),
    "gzip": lambda: gzip.compress(PLAIN.encode()),
    "gzip_bom_crlf_wrapped": lambda: gzip.compress(b"\xef\xbb\xbf" + _wrapped(3).replace("\n", "\r\n").encode()),
    "a2m": lambda: _a2m().encode(),
    "a3m": lambda: _a3m().encode(),
    "stockholm": lambda: _stockholm().encode(),
    "blank_lines_and_comments": lambda: ("; a comment\n\n" + PLAIN.replace("\n>", "\n\n; note\n>")).encode(),
    "stop_star_at_the_end": lambda: PLAIN.replace("\n>", "*\n>").replace(ROWS[-1] + "\n", ROWS[-1] + "*\n").encode(),
    "latin1_header": lambda: PLAIN.replace("description 0", "caf\xe9").encode("latin-1"),
}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain") / "plain.fasta"
    path.write_text(PLAIN)
    return read_alignment(path)


@pytest.mark.parametrize("case", list(SAME_AS_PLAIN))
def test_unusual_but_valid_alignment_reads_as_the_plain_file(case, plain, tmp_path):
    path = tmp_path / f"{case}.aln"
    path.write_bytes(SAME_AS_PLAIN[case]())
    aln = read_alignment(path)
    np.testing.assert_array_equal(aln.seqs, plain.seqs)
    assert aln.names == plain.names
    np.testing.assert_array_equal(plain.seqs, [PROTEIN.encode(r) for r in ROWS])  # and the plain file is right


def test_rare_amino_acids_U_and_O_read_as_C_and_K(tmp_path):
    rows = ["ACU-K", "AOC-K"]
    path = tmp_path / "uo.fasta"
    path.write_text("".join(f">s{m}\n{r}\n" for m, r in enumerate(rows)))
    seqs, _ = read_alignment(path, strict=True)
    np.testing.assert_array_equal(seqs, [PROTEIN.encode("ACC-K"), PROTEIN.encode("AKC-K")])


# ----------------------------------------------------------------------------- letters


@pytest.mark.parametrize("letter", ["B", "Z", "X", "J"])
def test_ambiguous_letter_is_a_counted_gap_or_an_error_when_strict(letter, plain, tmp_path):
    rows = list(ROWS)
    rows[3] = rows[3][:4] + letter + rows[3][5:]
    rows[7] = letter + rows[7][1:]
    path = tmp_path / "amb.fasta"
    path.write_text("".join(f">{n}\n{r}\n" for n, r in zip(NAMES, rows, strict=False)))
    with pytest.warns(
        UserWarning,
        match=rf"2 unknown letter\(s\) read as gaps \('{letter}' x2; first in sequence "
        rf"'seq3/1-9' \(number 4\), match column 5\)",
    ):
        seqs, _ = read_alignment(path)
    expected = np.array(plain.seqs)
    expected[3, 4] = expected[7, 0] = 0
    np.testing.assert_array_equal(seqs, expected)
    with pytest.raises(
        ValueError, match=rf"unknown letter '{letter}' in sequence 'seq3/1-9' \(number 4\), match column 5"
    ):
        read_alignment(path, strict=True)


def test_inner_stop_star_is_an_error_naming_line_and_column(tmp_path):
    path = tmp_path / "star.fasta"
    path.write_text(_wrapped(4).replace(ROWS[1][4:8], ROWS[1][4] + "*" + ROWS[1][6:8], 1))
    with pytest.raises(ValueError, match=r"line 7, column 2: '\*' \(a stop codon\) inside the sequence"):
        read_alignment(path)


def test_digit_is_an_error_naming_line_and_column(tmp_path):
    path = tmp_path / "digits.fasta"
    path.write_text(PLAIN.replace(ROWS[2], "1 " + ROWS[2]))  # GenBank-style numbered line
    with pytest.raises(ValueError, match=r"line 6, column 1: digit '1': not a residue of the protein alphabet"):
        read_alignment(path)


def test_unknown_symbol_is_a_counted_gap_and_strict_refuses_it(plain, tmp_path):
    path = tmp_path / "odd.fasta"
    path.write_text(PLAIN.replace(ROWS[0], "@" + ROWS[0][1:]))
    with pytest.warns(UserWarning, match=r"1 unknown letter\(s\) read as gaps \('@' x1"):
        seqs, _ = read_alignment(path)
    assert seqs[0, 0] == 0 and np.array_equal(seqs[1:], plain.seqs[1:])
    with pytest.raises(ValueError, match="unknown letter '@'"):
        read_alignment(path, strict=True)


# ----------------------------------------------------------------------------- unreadable files

BAD_FILES = {
    "empty_file": (b"", r"the file is empty"),
    "only_white_space": (b"\n  \n\t\n", r"the file is empty"),
    "binary_file": (bytes(range(256)) * 4, r"a binary file \(NUL byte at offset 0\)"),
    "json_file": (b'{"sequences": ["ACDE", "ACDE"]}\n', r"cannot tell the alignment format.*found '\{\"sequences\""),
    "utf32_file": (PLAIN.encode("utf-32"), r"UTF-32"),
    "broken_gzip": (gzip.compress(PLAIN.encode())[:30], r"looks gzipped but cannot be decompressed"),
    "headers_only": (b">a\n>b\n", r"no match columns"),
    "only_comments": (b"# a comment\n; another\n", r"no sequences found \(only comment lines\)"),
    "ragged_rows": (
        b">a\nACDE\n>b\nACD\n",
        r"ragged alignment: sequence 'b' \(number 2\) has 3 match columns but "
        r"the first sequence 'a' has 4",
    ),
    "stockholm_without_terminator": (b"# STOCKHOLM 1.0\na ACDE\nb ACDE\n", r"lacks its '//' terminator"),
    "stockholm_duplicate_name": (b"# STOCKHOLM 1.0\na ACDE\na ACDE\n//\n", r"line 3: sequence name 'a' appears twice"),
    "plain_text": (b"ACDEFG\nACDEFG\n", r"cannot tell the alignment format"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_unreadable_alignment_gets_one_clear_message(case, tmp_path):
    data, message = BAD_FILES[case]
    path = tmp_path / "bad.fasta"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message):
        read_alignment(path)


def test_missing_alignment_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_alignment(tmp_path / "nope.fasta")


# ----------------------------------------------------------------------------- degenerate alignments


def test_all_gap_row_reads_and_is_filtered(plain, tmp_path):
    path = tmp_path / "gaprow.fasta"
    path.write_text(PLAIN + ">empty\n" + "-" * L_ALN + "\n")
    aln = read_alignment(path)
    assert aln.M == M_ALN + 1 and np.all(aln.seqs[-1] == 0)
    w = np.asarray(sequence_weights(aln.seqs))
    assert np.all(np.isfinite(w)) and np.all(w > 0)
    filtered = read_alignment(path, max_gap_fraction=0.5)
    np.testing.assert_array_equal(filtered.seqs, plain.seqs)


GAP_COLUMN = "".join(f">{n}\n{r[:4]}-{r[4:]}\n" for n, r in zip(NAMES, ROWS, strict=False))


def test_all_gap_column_reads_fits_and_is_filtered(plain, tmp_path):
    path = tmp_path / "gapcol.fasta"
    path.write_text(GAP_COLUMN)
    aln = read_alignment(path)
    assert aln.L == L_ALN + 1 and np.all(aln.seqs[:, 4] == 0)
    model, _ = fit_plm(aln.seqs, q=21, n_steps=4, eval_every=2, progress=False)
    assert np.all(np.isfinite(np.asarray(model.couplings))) and np.all(np.isfinite(np.asarray(model.fields)))
    filtered = read_alignment(path, max_column_gap_fraction=0.99)
    np.testing.assert_array_equal(filtered.seqs, plain.seqs)
    np.testing.assert_array_equal(filtered.columns, [c for c in range(L_ALN + 1) if c != 4])


def test_one_sequence_reads_and_weighs(tmp_path):
    path = tmp_path / "one.fasta"
    path.write_text(f">only\n{ROWS[0]}\n")
    aln = read_alignment(path)
    assert aln.seqs.shape == (1, L_ALN)
    np.testing.assert_allclose(np.asarray(sequence_weights(aln.seqs)), [1.0])


def test_duplicate_fasta_names_are_kept(plain, tmp_path):
    path = tmp_path / "dup.fasta"
    path.write_text(PLAIN.replace(NAMES[1], NAMES[0]))
    aln = read_alignment(path)
    assert aln.names[0] == aln.names[1] == NAMES[0]
    np.testing.assert_array_equal(aln.seqs, plain.seqs)


# ----------------------------------------------------------------------------- models and data

Lm, qm = 4, 3


def _model(key=0, L=Lm, q=qm):
    if key is None:
        return jp.PottsModel(jnp.zeros((L, q)), jnp.zeros((L, L, q, q)))
    J = jax.random.normal(jax.random.PRNGKey(key), (L, L, q, q))
    J = 0.5 * (J + J.transpose(1, 0, 3, 2)) * (1 - jnp.eye(L))[:, :, None, None]
    return jp.PottsModel(jnp.zeros((L, q)), J)


def _bad_couplings():
    J = _model().couplings
    return J.at[0, 1, 0, 0].set(jnp.nan)


MODEL_ERRORS = {
    "nan_couplings": (
        lambda: jp.PottsModel(jnp.zeros((Lm, qm)), _bad_couplings()),
        r"couplings contains 1 non-finite value\(s\)",
    ),
    "inf_fields": (
        lambda: jp.PottsModel(jnp.zeros((Lm, qm)).at[1, 1].set(jnp.inf), _model().couplings),
        r"fields contains 1 non-finite value\(s\)",
    ),
    "asymmetric_couplings_sampled": (
        lambda: jp.sample(
            jp.PottsModel(jnp.zeros((Lm, qm)), _model().couplings.at[0, 1, 0, 1].add(1.0)),
            jax.random.PRNGKey(0),
            n_chains=2,
            n_samples=2,
            n_burnin=0,
        ),
        r"couplings are not symmetric",
    ),
    "negative_beta": (
        lambda: jp.sample(_model(), jax.random.PRNGKey(0), n_chains=2, n_samples=2, n_burnin=0, beta=-1.0),
        r"beta must be a finite number >= 0, got -1.0",
    ),
    "nan_beta_enumeration": (lambda: exact.log_partition(_model(), beta=float("nan")), r"beta must be finite"),
    "zero_chains": (
        lambda: jp.sample(_model(), jax.random.PRNGKey(0), n_chains=0, n_samples=2, n_burnin=0),
        r"n_chains must be an integer >= 1, got 0",
    ),
    "negative_samples": (
        lambda: jp.sample(_model(), jax.random.PRNGKey(0), n_chains=2, n_samples=-3, n_burnin=0),
        r"n_samples must be an integer >= 1, got -3",
    ),
    "negative_burnin": (
        lambda: jp.sample(_model(), jax.random.PRNGKey(0), n_chains=2, n_samples=2, n_burnin=-1),
        r"n_burnin must be an integer >= 0, got -1",
    ),
    "enumeration_too_large": (
        lambda: exact.log_partition(_model(None, L=30, q=21)),
        r"exact enumeration of q\*\*L = 21\*\*30",
    ),
    "data_colour_beyond_q": (
        lambda: jp.pseudo_likelihood(_model(), jnp.array([[0, 1, 2, 3]])),
        r"colour\(s\) outside 0..2 \(found min 0, max 3\)",
    ),
    "data_length_not_L": (
        lambda: jp.pseudo_likelihood(_model(), jnp.array([[0, 1, 2]])),
        r"last dimension L=4, got shape \(1, 3\)",
    ),
    "fit_q_below_data": (
        lambda: fit_plm(np.array([[0, 1, 2, 3], [1, 1, 1, 1]]), q=3, n_steps=1),
        r"colour\(s\) outside 0..2",
    ),
    "fit_one_site": (lambda: fit_plm(np.zeros((3, 1), np.int32), q=3, n_steps=1), r"L >= 2 sites, got L=1"),
    "replica_one_colour": (lambda: replica.Scenario(1, jnp.eye(1), 9.0), r"q must be >= 2 colours, got q=1"),
    "replica_negative_rho": (lambda: replica.Scenario(3, jnp.eye(3), -1.0), r"rho must be finite and > 0"),
    "replica_unknown_kind": (lambda: replica.Scenario(3, jnp.eye(3), 9.0, kind="ring"), r"kind must be one of"),
    "replica_asymmetric_U": (
        lambda: replica.Scenario(3, jnp.array([[1.0, 2, 0], [0, 1, 0], [0, 0, 1]]), 9.0),
        r"U must be symmetric",
    ),
    "replica_negative_alpha": (
        lambda: replica.solve(replica.Scenario(3, jnp.eye(3), 9.0), -1.0, 1.0),
        r"alpha must be >= 0, got -1.0",
    ),
    "replica_negative_lambda": (
        lambda: replica.solve(replica.Scenario(3, jnp.eye(3), 9.0), 1.0, -1.0),
        r"lam must be >= 0, got -1.0",
    ),
    "memory_estimate_too_large_sample": (
        lambda: jp.sample(_model(), jax.random.PRNGKey(0), n_chains=2, n_samples=2, n_burnin=0, max_memory="1M"),
        r"sampling 2 chains x 2 samples \(L=4, q=3\) needs about .* but 1 MB are available \(max_memory\).*"
        r"--max-memory unlimited",
    ),
    "memory_estimate_too_large_fit": (
        lambda: fit_plm(np.zeros((3, 4), np.int32), q=3, n_steps=1, max_memory=1e6),
        r"plmDCA fit \(L=4, q=3, M=3\) needs about .* but 1 MB are available",
    ),
    "memory_size_unreadable": (lambda: memory.parse_size("12 parsecs"), r"cannot read '12 parsecs' as a memory size"),
}


@pytest.mark.parametrize("case", list(MODEL_ERRORS))
def test_bad_model_or_parameter_gets_one_clear_message(case):
    call, message = MODEL_ERRORS[case]
    with pytest.raises(ValueError, match=message):
        call()


def test_memory_check_can_be_overridden():
    est = memory.sample_estimate(Lm, qm, 2, 2)
    with pytest.raises(memory.MemoryLimitError, match="--max-memory unlimited"):
        memory.check_memory(est, "sampling", est.total - 1)
    for budget in (est.total, "unlimited", float("inf"), f"{est.total / 1e9 * 1.01}G"):
        memory.check_memory(est, "sampling", budget)  # no error


# ----------------------------------------------------------------------------- checkpoints and outputs


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A fit's checkpoint (fit_plm, 4 steps in chunks of 2) and its data."""
    d = tmp_path_factory.mktemp("ckpt")
    (d / "gapcol.fasta").write_text(GAP_COLUMN)
    seqs = read_alignment(d / "gapcol.fasta").seqs
    fit_plm(seqs, q=21, n_steps=4, eval_every=2, checkpoint_path=d / "run.ckpt", progress=False)
    return d / "run.ckpt", seqs


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    Path(str(dst) + ".json").write_bytes(Path(str(src) + ".json").read_bytes())
    return dst


CHECKPOINT_DAMAGE = {
    "truncated_checkpoint": (
        lambda p: p.write_bytes(p.read_bytes()[:-100]),
        r"has \d+ bytes but its metadata .* records "
        r"\d+: the file is truncated or was replaced",
    ),
    "corrupted_checkpoint": (
        lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1])),
        r"is corrupted or does not belong to run.ckpt.json",
    ),
    "checkpoint_metadata_not_json": (
        lambda p: Path(str(p) + ".json").write_text('{"settings": {"L": 4'),
        r"checkpoint metadata .* is not valid JSON",
    ),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_DAMAGE))
def test_damaged_checkpoint_is_refused_not_restarted(case, checkpoint, tmp_path):
    src, seqs = checkpoint
    path = _copy_checkpoint(src, tmp_path / "run.ckpt")
    damage, message = CHECKPOINT_DAMAGE[case]
    damage(path)
    with pytest.raises(ValueError, match=message):
        fit_plm(seqs, q=21, n_steps=6, eval_every=2, checkpoint_path=path, resume=True, progress=False)


def test_foreign_checkpoint_is_refused(checkpoint, tmp_path):
    src, seqs = checkpoint
    path = _copy_checkpoint(src, tmp_path / "run.ckpt")
    with pytest.raises(ValueError, match=r"written by a run with different data"):
        fit_plm(seqs[::-1].copy(), q=21, n_steps=6, eval_every=2, checkpoint_path=path, resume=True, progress=False)


def test_checkpoint_of_another_size_is_refused(tmp_path):
    save_model(tmp_path / "m.eqx", _model(None, L=5))  # L = 5, not 4
    with pytest.raises(ValueError, match=r"does not match the structure of `like`"):
        load_checkpoint(tmp_path / "m.eqx", _model())


def test_not_a_checkpoint_file_is_refused(tmp_path):
    path = tmp_path / "random.ckpt"
    path.write_bytes(os.urandom(2000))
    with pytest.raises(ValueError, match=r"does not match the structure"):
        load_checkpoint(path, _model())


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"a": 1})

    def half_then_fail(fh):
        fh.write(b'{"a": ')
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_json_outputs_write_nan_and_inf_as_null(tmp_path):
    path = write_json(tmp_path / "sub" / "x.json", {"nan": float("nan"), "inf": np.float32(np.inf), "a": np.arange(2)})
    assert json.loads(path.read_text()) == {"nan": None, "inf": None, "a": [0, 1]}


def test_saved_model_pair_is_verified(tmp_path):
    model = _model()
    save_model(tmp_path / "m.eqx", model, note="x")
    meta = read_checkpoint_meta(tmp_path / "m.eqx")
    assert meta["file_bytes"] == (tmp_path / "m.eqx").stat().st_size and len(meta["file_sha256"]) == 64
    loaded, hyper = load_model(tmp_path / "m.eqx")
    assert hyper == {"note": "x"}
    np.testing.assert_array_equal(np.asarray(loaded.couplings), np.asarray(model.couplings))


# ----------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("xla_cache")


FIT = [
    "fit",
    "attention",
    "data.npz",
    "--steps",
    "600",
    "--eval-every",
    "3",
    "--batch-size",
    "16",
    "--seed",
    "2",
    "--quiet",
]


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory, cache):
    """All command-line cases, run in order in one child process."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(7)
    np.savez(d / "data.npz", sequences=rng.integers(0, 3, (40, 5)).astype(np.int32), q=np.int32(3))
    np.savez(d / "nokey.npz", seqs=np.zeros((3, 3), np.int32))
    np.savez(d / "float.npz", sequences=np.full((3, 3), 0.5))
    np.savez(d / "beyond_q.npz", sequences=np.array([[0, 1, 5], [1, 1, 1]], np.int32), q=np.int32(3))
    (d / "plain.fasta").write_text(PLAIN)
    (d / "variant.fasta.gz").write_bytes(SAME_AS_PLAIN["gzip_bom_crlf_wrapped"]())
    (d / "variant.sto").write_bytes(SAME_AS_PLAIN["stockholm"]())
    for name, (data, _) in BAD_FILES.items():
        (d / f"{name}.fasta").write_bytes(data)
    (d / "one.fasta").write_text(f">only\n{ROWS[0]}\n")
    (d / "digit.fasta").write_text(PLAIN.replace(ROWS[2], "1 " + ROWS[2]))
    (d / "amb.fasta").write_text(PLAIN.replace(ROWS[3], "X" + ROWS[3][1:]))
    (d / "data.json").write_text('{"sequences": [[0, 1], [1, 0]]}')
    (d / "a_file").write_text("not a folder")
    (d / "folder").mkdir()
    # A NaN in the saved arrays (the constructor refuses one, so it is put in with tree_at): a damaged model file.
    bad = eqx.tree_at(lambda m: m.fields, _model(), jnp.zeros((Lm, qm)).at[0, 0].set(jnp.nan))
    save_model(d / "nan_model.eqx", bad)
    (d / "junk_model.eqx").write_bytes(os.urandom(500))
    (d / "junk_model.eqx.json").write_text(json.dumps({"model": {"cls": "PottsModel", "L": 4, "q": 3}}))
    (d / "U.json").write_text("[[1, 2], [0, 1]]")

    fit = ["fit", "plm"]
    short = ["--steps", "3", "--quiet"]
    cases = {
        # same answer as the plain file
        "fit_plain": [*fit, "plain.fasta", *short, "--out", "o_plain"],
        "fit_gzip_bom_crlf_wrapped": [*fit, "variant.fasta.gz", *short, "--out", "o_variant"],
        "contacts_plain": ["contacts", "plain.fasta", "--steps", "3", "--min-sep", "2", "--quiet", "--out", "c_plain"],
        "contacts_stockholm": [
            "contacts",
            "variant.sto",
            "--steps",
            "3",
            "--min-sep",
            "2",
            "--quiet",
            "--out",
            "c_sto",
        ],
        "contacts_resumable": [
            "contacts",
            "plain.fasta",
            "--steps",
            "3",
            "--min-sep",
            "2",
            "--quiet",
            "--resume",
            "--out",
            "c_resume",
        ],
        "contacts_resumed": [
            "contacts",
            "plain.fasta",
            "--steps",
            "3",
            "--min-sep",
            "2",
            "--quiet",
            "--resume",
            "--out",
            "c_resume",
        ],
        "fit_ambiguous_letter_warns": [*fit, "amb.fasta", *short, "--out", "o_amb"],
        # existing outputs: overwritten as a whole
        "existing_outputs_first": [*fit, "plain.fasta", *short, "--out", "o_twice"],
        "existing_outputs_second": [*fit, "amb.fasta", *short, "--out", "o_twice"],
        "resume_foreign_checkpoint": [*fit, "plain.fasta", "--steps", "6", "--resume", "--quiet", "--out", "o_twice"],
        # bad inputs
        "missing_input": [*fit, "nope.npz", "--out", "o_x"],
        "input_is_a_folder": [*fit, "folder", "--out", "o_x"],
        "empty_input": [*fit, "empty_file.fasta", "--out", "o_x"],
        "binary_input": [*fit, "binary_file.fasta", "--out", "o_x"],
        "json_input": [*fit, "data.json", "--out", "o_x"],
        "ragged_input": [*fit, "ragged_rows.fasta", "--out", "o_x"],
        "digit_in_input": [*fit, "digit.fasta", "--out", "o_x"],
        "one_sequence": [*fit, "one.fasta", "--out", "o_x"],
        "npz_without_sequences": [*fit, "nokey.npz", "--out", "o_x"],
        "npz_float_sequences": [*fit, "float.npz", "--out", "o_x"],
        "npz_colour_beyond_q": [*fit, "beyond_q.npz", "--out", "o_x"],
        "q_contradicts_data": [*fit, "data.npz", "--q", "4", "--out", "o_x"],
        "q_contradicts_alphabet": [*fit, "plain.fasta", "--q", "5", "--out", "o_x"],
        "out_below_a_file": [*fit, "data.npz", "--steps", "2", "--out", "a_file/sub"],
        "out_is_a_file": [*fit, "data.npz", "--steps", "2", "--out", "a_file"],
        "memory_budget_too_small": [*fit, "data.npz", "--max-memory", "10M", "--out", "o_x"],
        "memory_size_unreadable": [*fit, "data.npz", "--max-memory", "lots", "--out", "o_x"],
        "unknown_flag": [*fit, "data.npz", "--bogus", "--out", "o_x"],
        "unknown_subcommand": ["fitt", "data.npz"],
        "zero_steps": [*fit, "data.npz", "--steps", "0", "--out", "o_x"],
        "zero_chains": ["sample", "--chains", "0", "--out", "s_x"],
        "negative_samples": ["sample", "--samples", "-5", "--out", "s_x"],
        "negative_beta": ["sample", "--beta", "-1", "--out", "s_x"],
        "missing_model_file": ["sample", "--model-file", "nope.eqx", "--out", "s_x"],
        "nan_model_file": ["sample", "--model-file", "nan_model.eqx", "--out", "s_x"],
        "junk_model_file": ["sample", "--model-file", "junk_model.eqx", "--out", "s_x"],
        "contacts_missing_distances": ["contacts", "plain.fasta", "--distances", "nope.dat", "--out", "c_x"],
        "replica_negative_rho": ["replica", "--rho", "-1", "--out", "r_x"],
        "replica_bad_grid": ["replica", "--alphas", "1:2", "--out", "r_x"],
        "replica_asymmetric_U": ["replica", "--q", "2", "--U", "U.json", "--out", "r_x"],
        "replica_zero_seeds": ["replica", "--simulate", "1", "--seeds", "0", "--out", "r_x"],
        "debug_raises": [*fit, "nope.npz", "--debug", "--out", "o_x"],
        "interrupt_reference": [*FIT, "--out", "full"],  # the uninterrupted run of the interrupt test
    }
    return d, run_cli_batch(cases, cache, d)


def _error_line(result) -> str:
    assert result["raised"] is None, result["raised"]
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result['stderr']}"
    assert "Traceback" not in result["stderr"]
    assert lines[0].startswith("jaxpotts: error: "), lines[0]
    return lines[0]


CLI_ERRORS = {
    "missing_input": r"input file nope.npz does not exist",
    "input_is_a_folder": r"input folder is a folder",
    "empty_input": r"empty_file.fasta: the file is empty",
    "binary_input": r"binary_file.fasta: a binary file \(NUL byte",
    "json_input": r"data.json: cannot tell the alignment format",
    "ragged_input": r"ragged alignment: sequence 'b' \(number 2\) has 3 match columns",
    "digit_in_input": r"line 6, column 1: digit '1'",
    "one_sequence": r"need at least 2 sequences to fit, got 1",
    "npz_without_sequences": r"nokey.npz has no 'sequences' array \(keys: seqs\)",
    "npz_float_sequences": r"'sequences' must be an integer array",
    "npz_colour_beyond_q": r"colours go up to 5, which needs q > 5, but q = 3",
    "q_contradicts_data": r"--q 4 contradicts q = 3 stored in data.npz",
    "q_contradicts_alphabet": r"--q 5 contradicts the protein alphabet's q = 21",
    "out_below_a_file": r"Not a directory|File exists",
    "out_is_a_file": r"File exists|Not a directory",
    "memory_budget_too_small": r"needs about .* but 10 MB are available \(max_memory\).*--max-memory unlimited",
    "memory_size_unreadable": r"--max-memory: cannot read 'lots' as a memory size",
    "unknown_flag": r"unrecognized arguments: --bogus",
    "unknown_subcommand": r"invalid choice: 'fitt'",
    "zero_steps": r"--steps: must be a positive integer, got 0",
    "zero_chains": r"--chains: must be a positive integer, got 0",
    "negative_samples": r"--samples: must be a positive integer, got -5",
    "negative_beta": r"--beta: must be a finite number >= 0, got -1",
    "missing_model_file": r"model file nope.eqx does not exist",
    "nan_model_file": r"the model's fields contains 1 non-finite value",
    "junk_model_file": r"junk_model.eqx",
    "contacts_missing_distances": r"distance file nope.dat does not exist",
    "replica_negative_rho": r"--rho: must be a finite number >= 0, got -1|--rho",
    "replica_bad_grid": r"'1:2' is neither a number nor START:STOP:NUM",
    "replica_asymmetric_U": r"symmetric",
    "replica_zero_seeds": r"--seeds: must be a positive integer, got 0",
    "resume_foreign_checkpoint": r"written by a run with different data",
}


@pytest.mark.parametrize("case", list(CLI_ERRORS))
def test_cli_bad_input_gets_one_line_and_exit_2(case, cli_results):
    _, results = cli_results
    result = results[case]
    assert result["code"] == 2, result
    assert re.search(CLI_ERRORS[case], _error_line(result)), _error_line(result)


def test_cli_debug_shows_the_traceback(cli_results):
    _, results = cli_results
    raised = results["debug_raises"]["raised"]
    assert raised is not None and "Traceback" in raised and "nope.npz does not exist" in raised


def test_cli_unusual_alignment_gives_the_plain_answer(cli_results):
    d, results = cli_results
    for case in ("fit_plain", "fit_gzip_bom_crlf_wrapped"):
        assert results[case]["code"] == 0, results[case]
    a, _ = load_model(d / "o_plain" / "model.eqx")
    b, _ = load_model(d / "o_variant" / "model.eqx")
    np.testing.assert_array_equal(np.asarray(a.couplings), np.asarray(b.couplings))
    np.testing.assert_array_equal(np.asarray(a.fields), np.asarray(b.fields))


def test_cli_contacts_on_stockholm_gives_the_plain_answer(cli_results):
    d, results = cli_results
    for case in ("contacts_plain", "contacts_stockholm"):
        assert results[case]["code"] == 0, results[case]
    assert (d / "c_plain" / "scores.csv").read_text() == (d / "c_sto" / "scores.csv").read_text()
    np.testing.assert_array_equal(
        np.load(d / "c_plain" / "scores.npz")["scores"], np.load(d / "c_sto" / "scores.npz")["scores"]
    )


def test_cli_contacts_resume_gives_the_uninterrupted_answer(cli_results):
    d, results = cli_results
    for case in ("contacts_resumable", "contacts_resumed"):
        assert results[case]["code"] == 0, results[case]
    assert read_checkpoint_meta(d / "c_resume" / "checkpoint.ckpt")["progress"]["step"] == 3
    assert (d / "c_plain" / "scores.csv").read_text() == (d / "c_resume" / "scores.csv").read_text()


def test_cli_ambiguous_letters_are_counted_on_stderr(cli_results):
    _, results = cli_results
    result = results["fit_ambiguous_letter_warns"]
    assert result["code"] == 0, result
    assert result["stderr"].startswith("jaxpotts: warning: amb.fasta: 1 unknown letter(s) read as gaps ('X' x1")
    assert len(result["stderr"].strip().splitlines()) == 1 and "Traceback" not in result["stderr"]


def test_cli_existing_outputs_are_replaced_whole(cli_results):
    d, results = cli_results
    assert results["existing_outputs_first"]["code"] == results["existing_outputs_second"]["code"] == 0
    out = d / "o_twice"
    summary = json.loads((out / "fit.json").read_text())
    assert summary["data"] == "amb.fasta"
    model, hyper = load_model(out / "model.eqx")  # the pair verifies (SHA-256 in the JSON)
    assert hyper["data"] == "amb.fasta"
    assert read_checkpoint_meta(out / "checkpoint.ckpt")["history"]["step"] == [3]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- interrupt and resume

# Python turns SIGINT into KeyboardInterrupt only if SIGINT was not ignored when it started (a
# test run in the background inherits it ignored): the child sets the handler itself.
_MAIN = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'jaxpotts'; runpy.run_module('jaxpotts.cli', run_name='__main__')"
)


def _start(args, cwd: Path, cache: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _MAIN, *map(str, args)],
        cwd=cwd,
        env=env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _signal_at_checkpoint(
    proc: subprocess.Popen, ckpt: Path, sig: int, after_step: int = 0, timeout: float = 240
) -> None:
    """Send `sig` as soon as the checkpoint's metadata records a step beyond `after_step`."""
    meta = Path(str(ckpt) + ".json")
    t0 = time.time()
    while True:
        assert proc.poll() is None, f"the fit ended before it was interrupted:\n{proc.communicate()}"
        assert time.time() - t0 < timeout, "no checkpoint appeared"
        try:
            if json.loads(meta.read_text())["progress"]["step"] > after_step:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.002)
    proc.send_signal(sig)


def test_interrupted_fit_resumes_to_the_uninterrupted_result(cli_results, cache):
    """Ctrl-C after the first checkpoint, then kill -9 of the resumed run after its first new
    checkpoint, then --resume to the end: the same model and history as the uninterrupted run
    (fit attention, Adam on minibatches, 600 steps in chunks of 3; the reference ran in the batch)."""
    d, results = cli_results
    assert results["interrupt_reference"]["code"] == 0, results["interrupt_reference"]
    out = d / "cut"
    ckpt = out / "checkpoint.ckpt"

    proc = _start([*FIT, "--out", out], d, cache)
    _signal_at_checkpoint(proc, ckpt, signal.SIGINT)
    code = proc.wait(timeout=120)
    stderr = proc.communicate()[1]
    assert code == 130, stderr
    assert stderr.strip() == f"jaxpotts: interrupted; the last checkpoint is {ckpt} (continue with --resume)"
    first = read_checkpoint_meta(ckpt)["progress"]["step"]  # intact: size and SHA-256 match the metadata

    proc = _start([*FIT, "--resume", "--out", out], d, cache)
    _signal_at_checkpoint(proc, ckpt, signal.SIGKILL, after_step=first)
    assert proc.wait(timeout=120) == -signal.SIGKILL
    proc.communicate()
    second = read_checkpoint_meta(ckpt)["progress"]["step"]
    assert 3 <= first < second < 600, f"interrupted at steps {first}, {second}: not in the middle of the run"
    assert not (out / "model.eqx").exists()

    resumed = run(["-m", "jaxpotts.cli", *FIT, "--resume", "--out", out], cache, d)
    assert resumed.returncode == 0, resumed.stderr
    a, b = (json.loads((d / p / "history.json").read_text()) for p in ("full", "cut"))
    assert a["step"] == b["step"] and a["step"][-1] == 600
    np.testing.assert_array_equal(a["train_loss"], b["train_loss"])
    ma, _ = load_model(d / "full" / "model.eqx")
    mb, _ = load_model(out / "model.eqx")
    for x, y in zip(jax.tree_util.tree_leaves(ma), jax.tree_util.tree_leaves(mb), strict=False):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
