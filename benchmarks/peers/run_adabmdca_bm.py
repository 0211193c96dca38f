#!/usr/bin/env python
"""Train adabmDCA's bmDCA (Boltzmann learning) on an alignment for a wall-time budget; write its
parameters and persistent chains as .npz and a JSON of the run.

Peer measurement for ``benchmarks/boltzmann.py``; runs in the peer's own venv (adabmDCA 1.0.0,
torch CPU), no jaxpotts import::

    /work/peer/bin/python benchmarks/peers/run_adabmdca_bm.py train.fasta --budget 120 \
        --out /tmp/pf14_adabm_bm.npz

What runs: ``adabmDCA.api.training.train_model(fasta, model_type="bmDCA", device="cpu")`` with
every other argument at its default, which is what ``adabmDCA train -m bmDCA -d train.fasta``
calls (scripts/train.py), i.e. adabmDCA's own default recipe (adabmDCA 1.0.0,
training_config.py): 10,000 persistent chains started from the profile model of the data
(``init_chains(fi=...)``), fields log f_i and zero couplings (``init_parameters``), 10
Metropolis sweeps per update, plain gradient ascent with learning rate 0.01, pseudocount
1/M_eff, no L2, sequence weights at identity 0.8, sequences with letters outside
``-ACDEFGHIKLMNPQRSTVWY`` dropped and duplicates removed, target Pearson 0.95, float32.
No ``output_dir``: the in-memory workflow (the CLI would also write params/chains every 100
updates).

The budget is enforced through the Python API, not by killing the CLI: ``train_model``'s
``is_cancelled`` hook is polled at the top of every update of ``adabmDCA.training.train_graph``
(and inside its record step); it answers True at the first top-of-update poll after `--budget`
seconds, so training stops between two complete updates (the last update's record is in the
history). The budget may be overrun by at most one update. ``train_model`` then raises
``OperationCancelledError`` and returns nothing, so the runner keeps references to what it
needs by wrapping, in ``adabmDCA.api.training``'s namespace, ``train_graph`` (its ``params``
dict, which ``update_params`` updates in place) and the sampler it is given (its last returned
chains). When training ends by itself (target or step limit) the runner checks that these are
the returned ones.

Clock: ``seconds`` runs from just before the ``train_model`` call (after importing torch),
so it includes adabmDCA's setup (reading the alignment, weights, frequencies, chain
initialisation, TorchScript compilation), as jaxpotts' ``fit_boltzmann`` wall time includes
its own setup and compilation.

Output (``--out``): ``fields`` (L, q) = adabmDCA's ``bias``; ``couplings`` (L, L, q, q) =
``coupling_matrix[i, a, j, b]`` moved to ``[i, j, a, b]`` (nothing else changed: its energy is
E(s) = -sum_i h_i(s_i) - 1/2 sum_{i,j} J_ij(s_i, s_j), diagonal blocks included, zero in bmDCA);
``chains`` (n_chains, L) int8 colours; ``alphabet`` (its token string: colour k is letter
alphabet[k]). And ``--out`` with .json: updates done, its last reported Pearson (its own
``get_correlation_two_points``: connected correlations of the chains against the pseudocounted
data), wall time, stop reason, settings, versions, and ``check``: adabmDCA's own energies
(``DCAModel.compute_energies``) of the first ``--check-energies`` sequences of the alignment
(single-line FASTA assumed), with which the reader verifies its conversion of the parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def _train(args):
    import torch

    torch.set_num_threads(args.threads)
    import adabmDCA.api.training as api_training
    from adabmDCA.api.exceptions import OperationCancelledError

    captured: dict = {}
    original_train_graph = api_training.train_graph

    def train_graph(**kwargs):
        captured["params"] = kwargs["params"]  # updated in place by adabmDCA.training.update_params
        sampler = kwargs["sampler"]

        def recording_sampler(*a, **kw):
            captured["chains"] = sampler(*a, **kw)
            return captured["chains"]

        kwargs["sampler"] = recording_sampler
        return original_train_graph(**kwargs)

    api_training.train_graph = train_graph
    log = {"pearson": [], "steps": [], "seconds": [], "recorded": False}

    def progress(event):
        log["pearson"].append(float(event.metrics.get("Pearson", float("nan"))))
        log["steps"].append(int(event.gradient_steps))
        log["seconds"].append(time.perf_counter() - t0)
        log["recorded"] = True

    def is_cancelled() -> bool:
        # True only at the first poll after a recorded update, i.e. at the top of an update.
        stop = log["recorded"] and time.perf_counter() - t0 >= args.budget
        log["recorded"] = False
        return stop

    kwargs = dict(model_type="bmDCA", device="cpu", seed=args.seed, progress=progress, is_cancelled=is_cancelled)
    if args.max_steps is not None:
        kwargs["max_gradient_steps"] = args.max_steps
    if args.n_chains is not None:
        kwargs["n_chains"] = args.n_chains
    t0 = time.perf_counter()
    try:
        result = api_training.train_model(args.alignment, **kwargs)
        stop_reason = result.stop_reason
        if result.model.params["coupling_matrix"] is not captured["params"]["coupling_matrix"] or not torch.equal(
            result.chains, captured["chains"]
        ):
            raise SystemExit("adabmDCA's returned parameters or chains are not the captured ones")
    except OperationCancelledError:
        stop_reason = "budget"
    seconds = time.perf_counter() - t0
    api_training.train_graph = original_train_graph
    return captured, log, stop_reason, seconds, api_training.get_tokens("protein")


def _own_energies(params, tokens: str, alignment: str, n: int) -> dict:
    """adabmDCA's energies (``DCAModel.compute_energies``) of the first `n` sequences."""
    from adabmDCA.api.model import DCAModel

    seqs = []
    with open(alignment) as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith(">") and len(seqs) < n:
                seqs.append(line)
    energies = DCAModel(params, alphabet=tokens).compute_energies(seqs) if seqs else []
    return dict(sequences=seqs, energies=[float(e) for e in energies])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("alignment", help="FASTA alignment (upper case and '-' only)")
    ap.add_argument("--budget", type=float, required=True, help="wall seconds of training (checked between updates)")
    ap.add_argument("--out", type=Path, required=True, help="parameters .npz (the run's JSON goes next to it)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=None, help="also stop after this many updates (tests)")
    ap.add_argument("--n-chains", type=int, default=None, help="instead of adabmDCA's default 10,000 (tests)")
    ap.add_argument(
        "--check-energies",
        type=int,
        default=20,
        help="adabmDCA's own energies of the first N sequences of the alignment go into the JSON (default 20)",
    )
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    from importlib.metadata import version

    import numpy as np
    import torch

    captured, log, stop_reason, seconds, tokens = _train(args)
    params = captured["params"]
    fields = params["bias"].detach().cpu().numpy().astype(np.float32)
    couplings = params["coupling_matrix"].detach().cpu().numpy().astype(np.float32).transpose(0, 2, 1, 3)
    chains = captured["chains"].argmax(-1).cpu().numpy().astype(np.int8)
    np.savez(args.out, fields=fields, couplings=np.ascontiguousarray(couplings), chains=chains, alphabet=tokens)
    run = dict(
        tool="adabmDCA",
        method="bmDCA",
        version=version("adabmDCA"),
        torch=torch.__version__,
        alignment=os.path.abspath(args.alignment),
        budget_seconds=args.budget,
        seconds=seconds,
        updates=log["steps"][-1] if log["steps"] else 0,
        pearson=log["pearson"][-1] if log["pearson"] else float("nan"),
        history={k: log[k] for k in ("steps", "pearson", "seconds")},
        stop_reason=stop_reason,
        L=int(fields.shape[0]),
        q=int(fields.shape[1]),
        n_chains=int(chains.shape[0]),
        settings=dict(
            recipe="adabmDCA defaults (bmDCA)",
            device="cpu",
            torch_threads=torch.get_num_threads(),
            seed=args.seed,
            max_steps=args.max_steps,
        ),  # fmt: skip
    )
    run["check"] = _own_energies(params, tokens, args.alignment, args.check_energies)
    args.out.with_suffix(".json").write_text(json.dumps(run, indent=1))
    print(
        f"adabmDCA bmDCA: {run['updates']} updates in {seconds:.1f} s, its Pearson {run['pearson']:.4f} -> {args.out}"
    )


if __name__ == "__main__":
    main()
