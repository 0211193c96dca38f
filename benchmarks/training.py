"""Training cost: factored attention vs the dense pseudo-likelihood fit vs Transformers.

    python benchmarks/training.py            # the table of benchmarks/README.md (Training)
    python benchmarks/training.py --quick    # small smoke run

At the size of examples/attention_vs_transformer.py (L = 20, q = 3, a sparse generalized Potts
model sampled with Gibbs), for each method this measures

* time per epoch: one pass over M training sequences (minibatches of 128, Adam), or one L-BFGS
  iteration over the full batch (line search included) for the dense fit;
  the dense fits use plmDCA's regularisation (lambda_J = lambda_h = 0.01), the attention layers
  none (plain MLM, as in the example);
* time to a fixed validation loss: wall time of `fit` until the validation MLM loss first falls
  to `floor + margin`, where floor is the true model's MLM loss on the same validation set (the
  conditional entropy estimate) and margin = 0.03 nats per site by default; "not reached" if it
  does not within the step budget.

Times exclude compilation (a warm-up fit of the same shapes runs first; `fit` compiles its chunk
once per model structure and batch shape) and are the best of `--repeats` runs for the epoch
times, because shared machines are noisy. Prints a Markdown table and writes JSON (default
benchmarks/results/training.json). Runs unchanged on any JAX backend and records it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxpotts import losses
from jaxpotts.attention import FactoredAttention, Transformer
from jaxpotts.potts import PottsModel, random_factored_potts
from jaxpotts.sampling import sample
from jaxpotts.training import fit


def draw(model, key, n):
    res = sample(model, key, n_chains=50, n_samples=-(-n // 50), n_burnin=1000, thin=20, progress=False)
    return np.asarray(res.sequences).reshape(-1, model.L)[:n]


PLM_L2 = dict(l2=0.01, l2_fields=0.01)  # plmDCA's defaults: unregularised dense PLM overfits at these M


def methods(L, q, key, d_model):
    k1, k2, k3 = jax.random.split(key, 3)
    zero = PottsModel(jnp.zeros((L, q)), jnp.zeros((L, L, q, q)))
    return {
        "factored attention (Adam)": dict(
            model=FactoredAttention(L, q, 1, 1, key=k1, softmax=False, fields=True),
            kw=dict(learning_rate=0.05, batch_size=128, loss="mlm"),
        ),
        "dense PLM (Adam)": dict(model=zero, kw=dict(learning_rate=0.05, batch_size=128, loss="mlm", **PLM_L2)),
        "dense PLM (L-BFGS, full batch)": dict(model=zero, kw=dict(optimizer="lbfgs", **PLM_L2)),
        "transformer, 1 layer (Adam)": dict(
            model=Transformer(L, q, 1, key=k2, d_model=d_model, d_mlp=2 * d_model),
            kw=dict(learning_rate=2e-3, batch_size=128, loss="stochastic"),
        ),
        "transformer, 3 layers (Adam)": dict(
            model=Transformer(L, q, 3, key=k3, d_model=d_model, d_mlp=2 * d_model),
            kw=dict(learning_rate=2e-3, batch_size=128, loss="stochastic"),
        ),
    }


def time_per_epoch(model, seqs, kw, repeats):
    """Seconds per pass over the data (Adam) or per L-BFGS iteration, compilation excluded."""
    lbfgs = kw.get("optimizer") == "lbfgs"
    run = dict(kw, progress=False, key=jax.random.PRNGKey(0))
    if lbfgs:
        run.update(n_steps=10, eval_every=10, tol=0.0)
    else:
        run.update(n_epochs=1)
    fit(model, seqs, **run)  # compile
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fitted, hist = fit(model, seqs, **run)
        jax.block_until_ready(jax.tree_util.tree_leaves(fitted))
        best = min(best, (time.perf_counter() - t0) / (len(hist.step_loss) if lbfgs else 1))
    return best


def time_to_target(model, seqs, val, target, kw, max_steps, eval_every):
    run = dict(
        kw,
        progress=False,
        key=jax.random.PRNGKey(1),
        validation_data=(val, None),
        eval_every=eval_every,
        target_loss=target,
    )
    fit(model, seqs, **dict(run, n_steps=eval_every, target_loss=None))  # compile the same chunk
    t0 = time.perf_counter()
    fitted, hist = fit(model, seqs, **dict(run, n_steps=max_steps))
    seconds = time.perf_counter() - t0
    return dict(
        seconds=seconds if hist.reached_target else None,
        steps=int(hist.step[-1]),
        reached=bool(hist.reached_target),
        best_val=float(np.nanmin(hist.val_loss)),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--M", type=int, default=4000, help="training sequences")
    parser.add_argument("--margin", type=float, default=0.03, help="target = floor + margin (nats per site)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "training.json")
    args = parser.parse_args(argv)
    L, q = 20, 3
    M, n_val, max_steps, eval_every, d_model = args.M, 1000, 6000, 100, 32
    if args.quick:
        M, n_val, max_steps, eval_every, d_model, args.repeats = 1000, 300, 600, 50, 16, 1

    keys = jax.random.split(jax.random.PRNGKey(1), 5)
    true = random_factored_potts(
        keys[0], L, q, graph="erdos_renyi", colours="random", coupling_scale=1.0, mean_degree=3.0, field_scale=0.0
    )
    seqs, val = draw(true, keys[1], M), draw(true, keys[2], n_val)
    floor = float(losses.mlm_loss(true, val))
    target = floor + args.margin
    rows = []
    for name, m in methods(L, q, keys[3], d_model).items():
        kw = m["kw"]
        epoch = time_per_epoch(m["model"], seqs, kw, args.repeats)
        lbfgs = kw.get("optimizer") == "lbfgs"
        tt = time_to_target(m["model"], seqs, val, target, kw, 300 if lbfgs else max_steps, 5 if lbfgs else eval_every)
        rows.append(dict(method=name, seconds_per_epoch=epoch, unit="iteration" if lbfgs else "epoch", **tt))
        print(
            f"{name:32s} {epoch * 1e3:9.1f} ms/{rows[-1]['unit']:9s} "
            + (
                f"target in {tt['seconds']:7.2f} s ({tt['steps']} steps)"
                if tt["reached"]
                else f"target not reached in {tt['steps']} steps (best val {tt['best_val']:.4f})"
            ),
            flush=True,
        )

    result = dict(
        L=L,
        q=q,
        M=M,
        n_val=n_val,
        floor=floor,
        margin=args.margin,
        target=target,
        batch_size=128,
        backend=jax.default_backend(),
        device=str(jax.devices()[0]),
        cpu_count=os.cpu_count(),
        platform=platform.platform(),
        jax=jax.__version__,
        rows=rows,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print()
    print(
        f"L={L}, q={q}, M={M} training sequences, validation {n_val}; target validation MLM loss "
        f"{target:.4f} = floor {floor:.4f} + {args.margin}; backend {result['backend']} ({result['device']})"
    )
    print()
    print("| method | time per epoch (or L-BFGS iteration) | time to target | steps to target |")
    print("|---|---|---|---|")
    for r in rows:
        per = f"{r['seconds_per_epoch'] * 1e3:.1f} ms" + (" / iteration" if r["unit"] == "iteration" else "")
        reach = f"{r['seconds']:.2f} s" if r["reached"] else f"not reached (best {r['best_val']:.4f})"
        print(f"| {r['method']} | {per} | {reach} | {r['steps'] if r['reached'] else '-'} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
