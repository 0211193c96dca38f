"""Boltzmann-machine learning (bmDCA) on PF00014 and PF00763: wall time to a Pearson of connected
correlations of 0.80, 0.90, 0.95 with equilibrated chains, held-out validation, and adabmDCA's
score after the same wall time.

    python benchmarks/boltzmann.py                 # the table of benchmarks/README.md
    python benchmarks/boltzmann.py --quick         # smoke run (small subsample, short budget)
    python benchmarks/boltzmann.py --peer-python /work/peer/bin/python   # with adabmDCA

For each family, `jaxpotts.boltzmann.fit_boltzmann` runs the default recipe
(`jaxpotts.defaults.BOLTZMANN`) with target 0.80, then resumes its checkpoint with target 0.90,
then 0.95 (a resumed fit follows the same trajectory as an uninterrupted one). Each stage stops
only when the frozen model's statistics reach the target with equilibrated chains
(`equilibration_check`), so the times are honest times-to-target; they are cumulative wall times
of the calls (compilation and the checks included). The final one- and two-site Pearson are
those of the last check.

`--validate` (default; `--no-validate` trains on the whole alignment): the fit sees a random 80%
of the alignment (`jaxpotts.generative.split_sequences` with the first of three keys split from
`--seed`, as examples/validate_model.py), and after the last stage `jaxpotts.generative.validate`
samples the final model and compares it with the training and the held-out 20%: the held-out
two-site (C_ij) and three-site (C_ijk) Pearson go into the table and the JSON, the report and
figures into `--figures`/<family>_<tool>/.

adabmDCA (`--peer-python`, default $JAXPOTTS_PEER_PYTHON; absent: skipped with a note): after the
jaxpotts stages, benchmarks/peers/run_adabmdca_bm.py trains adabmDCA's bmDCA with its own default
recipe (10,000 chains, 10 Metropolis sweeps, lr 0.01, from the profile model; torch CPU,
`--peer-threads` threads) on the same training sequences, in a subprocess of that interpreter,
for the wall time jaxpotts took over all its stages (to its last reached target, or its whole
budget; `--peer-seconds` overrides), clocked the same way (from the start of the training call,
setup and compilation included). Its parameters are imported (`jaxpotts.serialization.import_potts`;
the conversion is verified against adabmDCA's own energies of 20 training sequences, which must
agree up to one constant) and scored by the same frozen-model check as jaxpotts' stages
(`jaxpotts.boltzmann.frozen_model_pearson` on the recipe's number of its persistent chains, the
recipe's check sweeps), next to adabmDCA's own last reported Pearson (its chains against its
pseudocounted data); with `--validate` it is validated like the jaxpotts model.

Prints a table and writes JSON (default benchmarks/results/boltzmann.json) with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax
import numpy as np

from jaxpotts import defaults, generative
from jaxpotts.boltzmann import fit_boltzmann, frozen_model_pearson
from jaxpotts.msa import read_alignment, sequence_weights
from jaxpotts.potts import energy
from jaxpotts.serialization import import_potts

PFAM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfam"
PEER_SCRIPT = Path(__file__).resolve().parent / "peers" / "run_adabmdca_bm.py"
sys.path.insert(0, str(PEER_SCRIPT.parent))
from adabmdca_probe import peer_versions  # noqa: E402  (benchmarks/peers/)

TARGETS = (0.80, 0.90, 0.95)
VALIDATION = {
    "full": dict(sampler=generative.SAMPLER_DEFAULTS, n_triplets=50_000),
    "quick": dict(sampler=dict(n_chains=200, n_burnin=100, n_samples=5, thin=5), n_triplets=2000),
}


def load_family(name: str, quick: bool, validate: bool, seed: int) -> dict:
    """Sequences (quick: 300 random ones, first 20 columns), the train / held-out split (80/20,
    as examples/validate_model.py) when validating, the training weights (identity 0.8)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aln = read_alignment(PFAM / f"{name}.fasta")
    seqs, q = np.asarray(aln.seqs), aln.alphabet.q
    if quick:
        seqs = seqs[np.random.default_rng(0).choice(len(seqs), 300, replace=False), :20]
    train, test = seqs, None
    if validate:
        k_split = jax.random.split(jax.random.PRNGKey(seed), 3)[0]
        rows_train, rows_test = generative.split_sequences(k_split, seqs.shape[0], 0.2)
        train, test = seqs[rows_train], seqs[rows_test]
    w = np.asarray(sequence_weights(train, 0.8, q=q))
    return dict(train=train, test=test, weights=w, q=q, alphabet=aln.alphabet)


def jaxpotts_stages(name: str, data: dict, budget: float, seed: int, extra: dict) -> tuple[dict, object]:
    """The three stages 0.80 -> 0.90 -> 0.95; returns (row, last result)."""
    seqs, w, q = data["train"], data["weights"], data["q"]
    row = dict(family=name, M=int(seqs.shape[0]), L=int(seqs.shape[1]), M_eff=float(w.sum()), stages=[])
    row["M_test"] = None if data["test"] is None else int(data["test"].shape[0])
    wall = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "bm.ckpt"
        for target in TARGETS:
            t0 = time.perf_counter()
            res = fit_boltzmann(
                seqs, q=q, key=jax.random.PRNGKey(seed), weights=w, target=target, checkpoint_path=ck,
                resume=True, max_seconds=budget, progress=False, **extra,
            )  # fmt: skip
            wall += time.perf_counter() - t0
            stage = dict(target=target, wall_seconds=wall, **res.summary())
            stage.pop("settings")
            row["stages"].append(stage)
            print(f"{name} target {target}: reached {res.reached} after {wall:.0f} s, step {stage['steps']}, "
                  f"pearson {res.pearson:.4f}, site {res.site_pearson:.4f}, rhat {res.equilibration['rhat']:.3f}, "
                  f"tau {res.equilibration['tau']:.1f}", flush=True)  # fmt: skip
            if not res.reached:
                break
    row["settings"] = res.settings
    row["pearson"], row["site_pearson"], row["wall_seconds"] = res.pearson, res.site_pearson, wall
    return row, res.model


def validation(model, data: dict, seed: int, quick: bool, folder: Path | None) -> dict:
    """`generative.validate` of `model` against the training and held-out sequences (the third
    key split from `seed`, as examples/validate_model.py); the report and figure go to `folder`."""
    t0 = time.perf_counter()
    k_validate = jax.random.split(jax.random.PRNGKey(seed), 3)[2]
    cfg = VALIDATION["quick" if quick else "full"]
    report = generative.validate(
        model, data["train"], key=k_validate, weights=data["weights"], test_seqs=data["test"],
        sampler={**cfg["sampler"], "progress": False}, n_triplets=cfg["n_triplets"],
    )  # fmt: skip
    if folder is not None:
        generative.write_report(report, folder)
    a = report.summary["agreement"]
    out = {f"{stat}_{comp}": a[stat][comp]["pearson"] for stat in ("connected", "three_site") for comp in a[stat]}
    out["sampler"] = {k: report.summary["sampler"][k] for k in ("rhat", "tau", "equilibrated")}
    out["seconds"] = time.perf_counter() - t0
    return out


def peer_available(python: str | None) -> str | None:
    """adabmDCA's version if `python` can import adabmDCA and torch, else None."""
    return (peer_versions(python) or {}).get("adabmDCA")


def run_adabmdca(data: dict, seconds: float, python: str, threads: int, seed: int) -> tuple[object, np.ndarray, dict]:
    """adabmDCA's bmDCA on the training sequences for `seconds` (benchmarks/peers/run_adabmdca_bm.py);
    returns its model imported in the alignment's colour order, its chains (same order) and its
    run JSON, after checking the import against adabmDCA's own energies."""
    alphabet = data["alphabet"]
    with tempfile.TemporaryDirectory() as tmp:
        fasta, out = Path(tmp) / "train.fasta", Path(tmp) / "adabm.npz"
        fasta.write_text("".join(f">s{m}\n{alphabet.decode(s)}\n" for m, s in enumerate(data["train"])))
        cmd = [python, str(PEER_SCRIPT), str(fasta), "--budget", f"{seconds:.3f}", "--out", str(out),
               "--threads", str(threads), "--seed", str(seed)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 1800)
        if proc.returncode != 0:
            raise RuntimeError(f"adabmDCA runner failed:\n{proc.stderr[-3000:]}")
        run = json.loads(out.with_suffix(".json").read_text())
        arrays = dict(np.load(out))
    symbols = str(arrays["alphabet"])
    model = import_potts(arrays["fields"], arrays["couplings"], symbols, alphabet)
    chains = np.asarray(alphabet.encode(symbols))[arrays["chains"].astype(np.int64)]
    ours = np.array([float(energy(model, alphabet.encode(s))) for s in run["check"]["sequences"]])
    diff = ours - np.array(run["check"]["energies"])
    run["energy_check"] = dict(offset=float(diff.mean()), max_deviation=float(np.abs(diff - diff.mean()).max()))
    if run["energy_check"]["max_deviation"] > 1e-3 * max(1.0, float(np.abs(ours).max())):
        raise RuntimeError(f"imported adabmDCA model disagrees with adabmDCA's energies: {run['energy_check']}")
    run.pop("check")
    return model, chains, run


def peer_row(data: dict, seconds: float, args, settings: dict, folder: Path | None) -> dict:
    """adabmDCA for `seconds`, then the frozen-model check of jaxpotts' stages (and validation)."""
    model, chains, run = run_adabmdca(data, seconds, args.peer_python, args.peer_threads, args.seed)
    t0 = time.perf_counter()
    check = frozen_model_pearson(
        model, chains[: settings["n_chains"]], data["train"], data["weights"],
        key=jax.random.fold_in(jax.random.PRNGKey(args.seed), 1), n_sweeps=settings["check_sweeps"],
    )  # fmt: skip
    run.update(
        frozen_pearson=check["pearson"],
        frozen_site_pearson=check["site_pearson"],
        check_seconds=time.perf_counter() - t0,
    )
    run["equilibration"] = {k: check[k] for k in ("rhat", "tau", "equilibrated", "energy_chains", "energy_fresh")}
    if args.validate:
        run["validation"] = validation(model, data, args.seed, args.quick, folder)
    print(f"  adabmDCA: {run['updates']} updates in {run['seconds']:.0f} s (asked {seconds:.0f} s), its Pearson "
          f"{run['pearson']:.4f}, frozen-model check {check['pearson']:.4f} (rhat {check['rhat']:.3f})", flush=True)  # fmt: skip
    return run


def run_family(name: str, args, options: dict, peer: str | None) -> dict:
    data = load_family(name, args.quick, args.validate, args.seed)
    extra = {**(dict(n_chains=200, n_steps=200, chunk=20, check_sweeps=40) if args.quick else {}), **options}
    row, model = jaxpotts_stages(name, data, args.budget, args.seed, extra)
    figures = None if args.figures is None else args.figures / f"{name}_jaxpotts"
    if args.validate:
        row["validation"] = validation(model, data, args.seed, args.quick, figures)
    if peer:
        seconds = row["wall_seconds"] if args.peer_seconds is None else args.peer_seconds
        peer_figures = None if args.figures is None else args.figures / f"{name}_adabmDCA"
        row["adabmDCA"] = peer_row(data, seconds, args, row["settings"], peer_figures)
    return row


def _cells(r: dict, validate: bool, peer: bool) -> list[str]:
    times = {s["target"]: s for s in r["stages"] if s["reached"]}
    cells = [
        f"{times[t]['wall_seconds']:.0f} s ({times[t]['steps']})" if t in times else "not reached" for t in TARGETS
    ]
    cells += [f"{r['pearson']:.3f}", f"{r['site_pearson']:.3f}"]
    if validate:
        v = r["validation"]
        cells += [f"{v['connected_model_vs_test']:.3f}", f"{v['three_site_model_vs_test']:.3f}"]
    if peer:
        p = r.get("adabmDCA")
        cells += [
            ""
            if p is None
            else f"{p['pearson']:.3f} / {p['frozen_pearson']:.3f} ({p['updates']} in {p['seconds']:.0f} s)"
        ]
        if validate:
            cells += ["" if p is None else f"{p['validation']['connected_model_vs_test']:.3f} / "
                      f"{p['validation']['three_site_model_vs_test']:.3f}"]  # fmt: skip
    return cells


def print_table(rows: list[dict], validate: bool, peer: bool) -> None:
    head = [f"time to {t} (updates)" for t in TARGETS] + ["final C Pearson", "site Pearson"]
    if validate:
        head += ["held-out C_ij Pearson", "held-out C_ijk Pearson"]
    if peer:
        head += ["adabmDCA same wall time: its Pearson / frozen-model check (updates)"]
        head += ["adabmDCA held-out C_ij / C_ijk"] if validate else []
    print("\n| family | L | M_eff | " + " | ".join(head) + " |")
    print("|---|---|---|" + "---|" * len(head))
    for r in rows:
        print(f"| {r['family']} | {r['L']} | {r['M_eff']:.0f} | " + " | ".join(_cells(r, validate, peer)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["PF00014", "PF00763"])
    parser.add_argument("--budget", type=float, default=900.0, help="seconds of training per family (default 900)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 sequences, 20 columns, 60 s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="recipe overrides, e.g. optimizer=sgd learning_rate=1",
    )
    parser.add_argument("--validate", action=argparse.BooleanOptionalAction, default=True,
                        help="fit on 80%%, validate on the held-out 20%% (default on)")  # fmt: skip
    parser.add_argument("--figures", type=Path, default=Path(__file__).parent / "results" / "boltzmann_validation",
                        help="folder of the validation reports and figures")  # fmt: skip
    parser.add_argument("--peer-python", default=os.environ.get("JAXPOTTS_PEER_PYTHON"),
                        help="interpreter with adabmDCA and torch (default: $JAXPOTTS_PEER_PYTHON; none: skip)")  # fmt: skip
    parser.add_argument("--peer-threads", type=int, default=2, help="torch threads of adabmDCA (default 2)")
    parser.add_argument("--peer-seconds", type=float, default=None,
                        help="adabmDCA's wall time (default: jaxpotts' wall time over its stages)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "boltzmann.json")
    args = parser.parse_args()
    if args.quick:
        args.budget = 60.0
    load_before = os.getloadavg()
    options = {k: (v if k in ("optimizer", "start") else float(v)) for k, v in (s.split("=", 1) for s in args.set)}
    options = {
        k: int(v) if isinstance(v, float) and v.is_integer() and k != "learning_rate" else v for k, v in options.items()
    }
    peer = peer_available(args.peer_python)
    peer_note = None if peer else (
        f"adabmDCA skipped: {'no --peer-python or JAXPOTTS_PEER_PYTHON' if not args.peer_python else args.peer_python + ' cannot import adabmDCA and torch'}"
    )  # fmt: skip
    if peer_note:
        print(peer_note, flush=True)
    rows = [run_family(f, args, options, peer) for f in args.families]
    print_table(rows, args.validate, bool(peer))
    out = dict(
        rows=rows,
        overrides=options,
        budget_seconds=args.budget,
        quick=args.quick,
        validate=args.validate,
        recipe=defaults.BOLTZMANN.settings(**options),
        adabmDCA=dict(version=peer, python=args.peer_python, threads=args.peer_threads) if peer else peer_note,
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), backend=jax.default_backend()),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=float))
    print(f"load average before {load_before}, after {out['load_average_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()
