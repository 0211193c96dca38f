r"""Contact panel at controlled depth: which L2 rule holds when the alignment is shallow.

    nice -n 10 python benchmarks/depth_panel.py               # every family x depth x seed x variant, resumable
    python benchmarks/depth_panel.py --report                 # only print the tables of what is done
    python benchmarks/depth_panel.py --families PF00014 --depths 1 --seeds 0

The panel (`benchmarks/panel.py`) has only deep alignments, $M_\mathrm{eff}/L$ = 37 to 132, where
the regularisation rules differ by a pair or two. Families users bring are often shallow, and
there the rule decides. So each panel family (3n2a left out: L = 406 costs minutes per fit at
any depth) is cut down to a chosen depth: the sequences in a seeded random order, the shortest
prefix whose $M_\mathrm{eff}$ (weights at 0.8 identity, recomputed on the subset) reaches
``depth`` x L. Every variant is then fitted to the *same* subsets (`jaxpotts.contacts.pipeline`
with the package's defaults except those the variant names) and scored against the family's
full structure (PPV@L/5, L/2, L; distance < 8 A, |i - j| >= 5).

Variants: an L2 rule (``plmdca``: 0.01; ``ccmpred``: 0.2 (L-1)/M_eff, also plmc's and
GREMLIN's, see `benchmarks/panel.py`; ``auto``: the larger of the two, the package's default
``l2="auto"``, `jaxpotts.losses.l2_rule` with `defaults.PLM`'s constants; ``plmdca14``: the asymmetric plmDCA code's
own depth rule, 0.1 - 0.09 min(M_eff, 500)/500, stronger below M_eff = 500) and the couplings
(``asym``: plmDCA's L conditionals with their own couplings; ``sym``: one coupling per pair,
as CCMpred and plmc), optionally with a pipeline option after a third slash (``theta=0.7``:
the sequence-weight identity threshold; ``l2_fields=0.001``: lambda_h; ``ftol=0.01``: the
L-BFGS stop, a relative fall of the objective over 5 iterations, default 0.003). Results go to
the JSON (default `benchmarks/results/depth_panel.json`) after every fit; a later run skips what
is there.

The report prints mean PPV@L over the seeds per (family, depth) and variant, and the
leave-one-family-out choice: for each family, the variant with the best mean PPV@L over the
*other* families (all depths), and that variant's mean on the held-out family.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEPTHS = (0.5, 1.0, 2.0, 5.0, 10.0, "full")
SEEDS = (0, 1, 2)
VARIANTS = (
    "plmdca/asym",
    "ccmpred/asym",
    "auto/asym",
    "plmdca14/asym",
    "plmdca/sym",
    "ccmpred/sym",
    "auto/sym",
    "auto/asym/theta=0.7",
    "auto/asym/theta=0.9",
    "auto/asym/l2_fields=0.001",
    "auto/asym/ftol=0.01",
    "auto/asym/ftol=0.001",
)
FULL = "full"  # the whole alignment: one fit per variant (seed 0), no subsample


def _depth(text: str):
    """A depth on the command line: M_eff / L (a positive number) or "full"."""
    if text == FULL:
        return FULL
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"depth must be positive or 'full', got {text!r}")
    return value


def _order(depth) -> float:
    return math.inf if depth == FULL else depth


def _panel():
    """benchmarks/panel.py (families, rules, JSON helpers)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import panel

    return panel


def subsample(aln, depth: float, seed: int, theta: float = 0.8):
    """The shortest prefix of a seeded random order of `aln`'s sequences with M_eff >= depth L.

    M_eff is not monotone in the prefix length (a new sequence lowers its neighbours' weights),
    so the search doubles the length until the target is reached and then bisects; the result
    reaches the target and one sequence fewer (at the bisection's end) does not.
    """
    import numpy as np

    from jaxpotts import msa

    order = np.random.default_rng(seed).permutation(aln.M)
    target = depth * aln.L

    def prefix(n):
        idx = np.sort(order[:n])
        return dataclasses.replace(
            aln, seqs=aln.seqs[idx], names=tuple(aln.names[i] for i in idx), rows=np.asarray(aln.rows)[idx]
        )

    def m_eff(n):
        return float(np.sum(msa.sequence_weights(prefix(n).seqs, theta, q=aln.alphabet.q)))

    lo, hi = 0, min(aln.M, max(2, int(target)))  # invariant: m_eff(lo) < target (m_eff(0) = 0)
    while m_eff(hi) < target:
        if hi == aln.M:
            raise ValueError(f"the whole alignment has M_eff {m_eff(hi):.1f} < {target:.1f}: depth {depth} too large")
        lo, hi = hi, min(aln.M, 2 * hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if m_eff(mid) < target else (lo, mid)
    return prefix(hi)


def _parse(variant: str) -> tuple[str, str, dict]:
    """'rule/couplings[/name=value ...]' -> (rule, couplings, pipeline options: theta, l2_fields, ftol)."""
    rule, couplings, *extra = variant.split("/")
    options = {k: float(v) for k, v in (e.split("=") for e in extra)}
    return rule, couplings, options


def _lambda(rule: str, L: int, m_eff: float) -> float:
    rules = _panel().RULES
    if rule == "plmdca14":  # plmDCA_asymmetric.m: lambda_J = 0.1 - 0.09 B_eff / 500 when B_eff <= 500
        return 0.1 - 0.09 * min(m_eff, 500.0) / 500.0
    if rule == "auto":  # the package's rule (defaults.PLM's l2="auto")
        from jaxpotts import defaults, losses

        return losses.l2_rule(
            L, 21, m_eff, factor=defaults.PLM.model["l2_factor"], floor=defaults.PLM.model["l2_floor"]
        )
    return rules[rule][0](L, 21, m_eff)


_FIT_KEYS = ("l2", "M", "m_eff", "ppv", "ppv_other_scores", "fit_seconds", "iterations", "load_before", "finished")


def _fit(sub, D, variant: str, lam: float) -> dict:
    import numpy as np

    from jaxpotts import contacts

    _, couplings, options = _parse(variant)
    if couplings == "sym":
        options["couplings"] = "symmetric"
    load0 = os.getloadavg()
    res = contacts.pipeline(sub, "plm", l2=lam, progress=False, **options)
    gap = sub.alphabet.gap_index
    other_scores = {  # the same fit scored two other ways: what the score's choices are worth
        "gap_in_norm": contacts.scores(res.potts, include_gap=True, gap_index=gap),
        "no_apc": contacts.scores(res.potts, apc=False, gap_index=gap),
    }
    return dict(
        l2=lam,
        M=int(sub.M),
        m_eff=res.m_eff,
        ppv=res.precision(D),
        ppv_other_scores={
            k: dataclasses.replace(res, scores=np.asarray(S)).precision(D) for k, S in other_scores.items()
        },
        fit_seconds=res.seconds["fit"],
        iterations=int(res.history.step[-1]) if len(res.history.step) else 0,
        load_before=load0,
        finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    )


def _twin(report: dict, name: str, depth: float, seed: int, variant: str, lam: float) -> dict | None:
    """An earlier fit of the same subsample with the same couplings and lambda_J (within 1e-9):
    ``auto`` is ``ccmpred`` below M_eff = 20 (L-1) and ``plmdca`` above, so their rows share one fit."""
    settings = _parse(variant)[1:]
    for r in report["runs"]:
        same = (r["family"], r["depth"], r["seed"]) == (name, depth, seed) and _parse(r["variant"])[1:] == settings
        if same and "shared_fit" not in r and abs(r["l2"] - lam) <= 1e-9 * lam:
            return r
    return None


def _panel_fit(name: str, depth, variant: str) -> dict | None:
    """The asymmetric full-depth fits are `benchmarks/panel.py`'s (its JSON), not fitted twice."""
    path = HERE / "results" / "panel.json"
    rule, couplings, options = _parse(variant)
    if depth != FULL or couplings != "asym" or options or not path.exists():
        return None
    row = next((r for r in _panel()._load(path)["runs"] if (r["family"], r["rule"]) == (name, rule)), None)
    return None if row is None else dict(row, variant="panel.py " + rule)


def run(families, depths, seeds, variants, out: Path) -> dict:
    """Fit every missing (depth, family, seed, variant), shallowest first, writing the JSON after
    each fit, so that a stopped run has every family at the depths it reached."""
    import numpy as np

    from jaxpotts import contacts, msa
    from jaxpotts._report import write_json

    panel = _panel()
    report = panel._load(out)
    done = {(r["family"], r["depth"], r["seed"], r["variant"]) for r in report["runs"]}
    data = {}
    for depth in depths:
        for name in families:
            if name not in data:
                aln_path, dist_path = panel.FAMILIES[name]
                aln = msa.read_alignment(aln_path)
                data[name] = (aln, contacts.read_distances(dist_path, L=aln.L))
            aln, D = data[name]
            for seed in seeds[:1] if depth == FULL else seeds:
                todo = [v for v in variants if (name, depth, seed, v) not in done]
                if not todo:
                    continue
                sub = aln if depth == FULL else subsample(aln, depth, seed)
                for variant in todo:
                    rule, _, options = _parse(variant)
                    theta = options.get("theta", 0.8)
                    m_eff = float(np.sum(msa.sequence_weights(sub.seqs, theta, q=sub.alphabet.q)))
                    lam = _lambda(rule, sub.L, m_eff)
                    row = dict(family=name, depth=depth, seed=seed, variant=variant, L=int(aln.L))
                    twin = _twin(report, name, depth, seed, variant, lam) or _panel_fit(name, depth, variant)
                    row.update(
                        {k: twin[k] for k in _FIT_KEYS if k in twin} | {"shared_fit": twin["variant"]}
                        if twin
                        else _fit(sub, D, variant, lam)
                    )
                    report["runs"].append(row)
                    write_json(out, report)
                    print(
                        f"{name} depth {depth} seed {seed} {variant}: M {row['M']}, M_eff {row['m_eff']:.1f}, "
                        f"lambda_J {row['l2']:.4g}, PPV@L {row['ppv']['L']:.3f} ({row['fit_seconds']:.1f} s)"
                        + (f" (fit of {row['shared_fit']})" if "shared_fit" in row else ""),
                        flush=True,
                    )
    return report


def _means(report: dict, variants) -> dict:
    """(family, depth) -> variant -> mean PPV@L over the seeds at which the cell measured every
    variant it has; ``n_seeds`` those seeds. A variant not measured in a cell is absent there."""
    cells: dict = {}
    for r in report["runs"]:
        if r["variant"] in variants:
            cells.setdefault((r["family"], r["depth"]), {}).setdefault(r["seed"], {})[r["variant"]] = r["ppv"]["L"]
    means = {}
    for cell, by_seed in cells.items():
        present = [v for v in variants if any(v in x for x in by_seed.values())]
        seeds = [s for s, x in by_seed.items() if all(v in x for v in present)]
        if seeds:
            means[cell] = {v: sum(by_seed[s][v] for s in seeds) / len(seeds) for v in present} | {"n_seeds": len(seeds)}
    return means


def complete_variants(means: dict, variants) -> list[str]:
    """The variants measured in every (family, depth) cell: the ones the choice compares."""
    return [v for v in variants if means and all(v in m for m in means.values())]


def leave_one_out(means: dict, variants) -> list[dict]:
    """`panel.choose_held_out` with each family's PPV@L the mean over its depths. `variants`
    must be measured in every cell (`complete_variants`); the first is the reference."""
    table = {}
    for f in sorted({f for f, _ in means}):
        cells = [m for (g, _), m in means.items() if g == f]
        table[f] = {v: sum(c[v] for c in cells) / len(cells) for v in variants}
    return _panel().choose_held_out(table, list(variants), variants[0])


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def print_report(report: dict, variants) -> None:
    from jaxpotts._report import markdown_table

    means = _means(report, variants)
    rows = []
    for (family, depth), m in sorted(means.items(), key=lambda kv: (kv[0][0], _order(kv[0][1]))):
        m_eff = [r["m_eff"] for r in report["runs"] if r["family"] == family and r["depth"] == depth]
        rows.append(
            dict(family=family, depth=depth, mean_M_eff=f"{sum(m_eff) / len(m_eff):.1f}", seeds=m["n_seeds"])
            | {v: _fmt(m.get(v)) for v in variants}
        )
    print("mean PPV@L over the seeds; depth = M_eff / L of the subsample ('full': the whole alignment, one fit)")
    print(markdown_table(rows, ["family", "depth", "mean_M_eff", "seeds", *variants]))
    by_depth = []
    for depth in sorted({d for _, d in means}, key=_order):
        cells = [m for (_, d), m in means.items() if d == depth]
        by_depth.append(
            dict(depth=depth, families=len(cells))
            | {v: _fmt(sum(c[v] for c in cells) / len(cells)) if all(v in c for c in cells) else "-" for v in variants}
        )
    print("\nmean over the families, per depth ('-': not measured on every family)")
    print(markdown_table(by_depth, ["depth", "families", *variants]))
    compared = complete_variants(means, variants)
    loo = leave_one_out(means, compared) if len(compared) > 1 else []
    if loo:
        print(f"\nleave-one-family-out among the variants measured everywhere ({', '.join(compared)}):")
        print(markdown_table(loo, list(loo[0]), floats="{:.3f}"))
        n = len(loo)
        print(
            f"mean PPV@L held out: chosen {sum(r['ppv_L_held_out'] for r in loo) / n:.3f}, "
            f"{compared[0]} {sum(r['reference_ppv_L'] for r in loo) / n:.3f}, "
            f"per-family best {sum(r['best_ppv_L'] for r in loo) / n:.3f}"
        )


def main(argv=None) -> int:
    families = [f for f in _panel().FAMILIES if f != "3n2a"]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="+", choices=families, default=families)
    p.add_argument(
        "--depths", nargs="+", type=_depth, default=list(DEPTHS), help="M_eff / L of the subsamples, or full"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--out", type=Path, default=HERE / "results" / "depth_panel.json")
    p.add_argument("--report", action="store_true", help="print the tables of the JSON, fit nothing")
    args = p.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
    import jaxpotts  # noqa: F401  (sets JAX up: one device per core, the compilation cache)

    variants = [v for v in VARIANTS if v in args.variants]
    report = (
        _panel()._load(args.out) if args.report else run(args.families, args.depths, args.seeds, variants, args.out)
    )
    # The tables cover the chosen families and depths (all by default), so that variants measured
    # at some depths only can be compared, and chosen leave-one-out, on those.
    keep = [r for r in report["runs"] if r["family"] in args.families and r["depth"] in args.depths]
    print_report(dict(report, runs=keep), variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
