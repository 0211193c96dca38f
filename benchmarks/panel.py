r"""Contact-prediction panel: which L2 rule for plmDCA's couplings generalises across families.

    nice -n 10 python benchmarks/panel.py                   # every family x rule, resumable
    python benchmarks/panel.py --quick                       # PF00014, two rules (smoke run)
    python benchmarks/panel.py --families PF00014 PF00763 --rules plmdca ccmpred
    python benchmarks/panel.py --report                      # only print the table of what is done
    python benchmarks/panel.py --peers none                  # without CCMpred/plmc (default: when on PATH)

For each family of the panel (`shared/data/pfam`: PF00014, PF00763; `shared/data/panel`:
PF00595, PF07648, PF13354, 3n2a; smallest fits first, 3n2a last) and each regularisation rule
below, one plmDCA fit (`jaxpotts.contacts.pipeline` with the package's defaults except
$\lambda_J$), recording PPV@L/5, L/2, L (contact: distance < 8 A, |i - j| >= 5, unknown
distances left out), the fit's wall time, iterations, L, M and M_eff, and the load average.
Every result is written to the JSON file (default `benchmarks/results/panel.json`) as soon as
it is measured; a later run skips the (family, rule) pairs already there, so a long panel can be
continued by another session. The two ends of the grid (``plmdca``, ``ccmpred``) run first on
every family, then the steps between. Rules whose $\lambda_J$ on a family is within 5% of one
already fitted there share that fit (marked ``shared_fit``): on 3n2a all rules give 0.0096-0.0100.

With ``--peers auto`` (the default) the C tools run on every family too, when installed:
CCMpred and plmc on PATH or named by ``JAXPOTTS_CCMPRED`` / ``JAXPOTTS_PLMC``
(`benchmarks/peers/c_tools.py`: each with its own documented contact settings, the same
sequences, scored by the same function), one row per (family, tool) under ``peers`` in the JSON
with PPV@L/5, L/2, L and the tool's wall time; an absent tool is skipped with one note
("ccmpred not on PATH: skipped; set JAXPOTTS_CCMPRED", under ``peer_notes``). ``--peers none``
runs none, ``--peers ccmpred`` only CCMpred.

Then it prints the panel table (PPV@L of every family x rule) and the leave-one-family-out
choice: for each family, the rule with the best mean PPV@L on the *other* families (only
families where every rule is measured), and that rule's PPV@L on the held-out family. A rule is
"chosen on the panel" only if it wins there; no rule is tuned on the family it is scored on.

How the peers regularise (all in the units of this package: the objective is the weighted
*mean* over sequences of the pseudo-likelihood plus $\frac{\lambda_J}{2}\sum_{i\ne j}\|J_{ij}\|^2$,
so an absolute penalty $\lambda\sum_{i<j}\|J_{ij}\|^2$ on a weighted *sum* is
$\lambda_J = \lambda / M_\mathrm{eff}$):

* plmDCA (asymmetric, Ekeberg et al. 2014) and PlmDCA.jl (`lambdaJ = 0.01`, `lambdaH = 0.01`):
  the objective is already a weighted mean, $\lambda_J = 0.01$ whatever L, q, M_eff. This is
  `defaults.PLM` (rule ``plmdca``).
* CCMpred (`ccmpred.c`: ``lambda_pair = lambda_pair_factor * (ncol - 1)``, factor 0.2;
  `evaluate_cpu.c`: ``reg += 0.5 * lambda_pair * x^2`` over both orders of each pair, i.e.
  $\lambda_\mathrm{pair}\sum_{i<j}\|w_{ij}\|^2$ on the weighted sum): $\lambda_J = 0.2 (L-1)/M_\mathrm{eff}$.
* plmc (`inference.c`: ``fx += lambdaEij * x^2`` over i < j on the weighted sum, default
  ``-le 16``) as run by EVcouplings (``lambda_J = 0.01``, ``lambda_J_times_Lq``: times
  (q - 1)(L - 1)): $\lambda_J = 0.01 (q-1)(L-1)/M_\mathrm{eff}$. For proteins (q = 21) this is
  CCMpred's rule exactly (0.01 x 20 = 0.2), so one rule (``ccmpred``) stands for both.
* GREMLIN (Kamisetty et al. 2013; the PyTorch port in songlab-cal/mogwai,
  ``gremlin_weight_decay_coeffs``: ``l2_coeff * (L - 1) * (A - 1) / num_seqs`` with
  ``l2_coeff = 0.01`` on a per-sequence mean): the same (q - 1)(L - 1) scaling as plmc,
  0.19-0.2 (L-1)/M_eff for proteins (A = 20 or 21).

So the panel's question is one dimension: the per-$M_\mathrm{eff}$ constant 0.01 (plmDCA) against
$0.2 (L-1)/M_\mathrm{eff}$ (CCMpred, plmc, GREMLIN), with the geometric interpolations
$0.01^{1-t}\,[0.2 (L-1)/M_\mathrm{eff}]^t$ at t = 1/3 and 2/3 in between (``geo1``, ``geo2``).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
# name -> (alignment, distances); the order is the run order (cheapest fits first, 3n2a last).
FAMILIES = {
    "PF00014": (SHARED / "pfam" / "PF00014.fasta", SHARED / "pfam" / "PF00014_struct.dat"),
    "PF07648": (
        SHARED / "panel" / "PF07648" / "PF07648.fasta",
        SHARED / "panel" / "PF07648" / "PF07648_struct_struct.dat",
    ),
    "PF00595": (
        SHARED / "panel" / "PF00595" / "PF00595_mgap6.fasta.gz",
        SHARED / "panel" / "PF00595" / "PF00595_struct.dat",
    ),
    "PF00763": (SHARED / "pfam" / "PF00763.fasta", SHARED / "pfam" / "PF00763_distances.dat"),
    "PF13354": (
        SHARED / "panel" / "PF13354" / "PF13354_wo_ref_seqs.fasta.gz",
        SHARED / "panel" / "PF13354" / "PF13354_struct.dat",
    ),
    # 3n2a_struct.dat writes 0.0 for unlisted pairs (beyond 20 A); 3n2a_distances.dat has them as 99.
    "3n2a": (SHARED / "panel" / "3n2a" / "3n2a_1_A.fasta.gz", SHARED / "panel" / "3n2a" / "3n2a_distances.dat"),
}

# plmDCA's PPV@L (lambda_J = 0.01 per M_eff) in shared/data/panel/README.md, on the families the
# issue gives no peer figures for (those: peers/c_tools.py REFERENCE): tests/test_panel.py's
# regression floors (minus 0.01).
README_PPV_L = {"PF00595": 0.951, "PF07648": 0.878, "PF13354": 0.995}


def _ccmpred(L: int, q: int, m_eff: float) -> float:
    return 0.2 * (L - 1) / m_eff


def _geo(t: float):
    return lambda L, q, m_eff: 0.01 ** (1 - t) * _ccmpred(L, q, m_eff) ** t


# name -> (lambda_J(L, q, M_eff), description)
RULES = {
    "plmdca": (lambda L, q, m_eff: 0.01, "0.01 (plmDCA, PlmDCA.jl; defaults.PLM)"),
    "geo1": (_geo(1 / 3), "0.01^(2/3) [0.2 (L-1)/M_eff]^(1/3)"),
    "geo2": (_geo(2 / 3), "0.01^(1/3) [0.2 (L-1)/M_eff]^(2/3)"),
    "ccmpred": (_ccmpred, "0.2 (L-1)/M_eff (CCMpred; = plmc/EVcouplings/GREMLIN 0.01 (q-1)(L-1)/M_eff at q=21)"),
}
SHARE_TOLERANCE = 0.05  # rules within 5% in lambda_J share one fit


def _load(path: Path) -> dict:
    import json

    if path.exists():
        return json.loads(path.read_text())
    return {"runs": [], "families": {}}


def _family_info(report: dict, name: str, out: Path):
    """The alignment, its distances and M_eff (M_eff cached in the report)."""
    import numpy as np

    from jaxpotts import contacts, msa
    from jaxpotts._report import write_json

    aln_path, dist_path = FAMILIES[name]
    aln = msa.read_alignment(aln_path)
    D = contacts.read_distances(dist_path, L=aln.L)
    info = report["families"].get(name)
    if info is None:
        t0 = time.perf_counter()
        m_eff = float(np.sum(msa.sequence_weights(aln, 0.8)))
        info = dict(L=int(aln.L), M=int(aln.M), m_eff=m_eff, weights_seconds=time.perf_counter() - t0)
        report["families"][name] = info
        write_json(out, report)
    return aln, D, info


def _fit_one(name: str, rule: str, lam: float, aln, D, info: dict) -> dict:
    import resource

    from jaxpotts import contacts

    load0 = os.getloadavg()
    estimate = contacts.fit_memory(aln, "plm")
    print(f"{name}: memory estimate of the fit {estimate}", flush=True)
    res = contacts.pipeline(aln, "plm", l2=lam, progress=False)
    ppv = res.precision(D)
    return dict(
        family=name,
        rule=rule,
        l2=lam,
        L=info["L"],
        M=info["M"],
        m_eff=res.m_eff,
        ppv=ppv,
        fit_seconds=res.seconds["fit"],
        total_seconds=res.seconds["total"],
        iterations=int(res.history.step[-1]) if len(res.history.step) else 0,
        converged=bool(res.history.converged),
        memory_estimate_bytes=estimate.total,
        peak_rss_bytes_so_far=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
        load_before=load0,
        load_after=os.getloadavg(),
        finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    )


def _pending(report: dict, families, rules) -> list[tuple[str, str]]:
    """(family, rule) pairs still to fit, in run order: first the two ends of the grid (plmdca,
    ccmpred) on every family, smallest first, then the steps between; a stopped panel has
    then compared the peers' rule with the default on as many families as possible."""
    done = {(r["family"], r["rule"]) for r in report["runs"]}
    ends = [r for r in rules if r in ("plmdca", "ccmpred")]
    passes = [ends] + [[r] for r in rules if r not in ends]
    return [(f, r) for group in passes for f in families for r in group if (f, r) not in done]


def run_panel(families, rules, out: Path) -> dict:
    """Fit every missing (family, rule) pair, writing the report after each."""
    from jaxpotts._report import write_json

    report = _load(out)
    report.setdefault("machine", platform.platform())
    report["rules"] = {r: RULES[r][1] for r in RULES}
    loaded = {}
    for name, rule in _pending(report, families, rules):
        if name not in loaded:
            loaded = {name: _family_info(report, name, out)}  # one family in memory at a time
        aln, D, info = loaded[name]
        lam = RULES[rule][0](info["L"], 21, info["m_eff"])
        twin = next(
            (
                r
                for r in report["runs"]
                if r["family"] == name and "shared_fit" not in r and abs(math.log(r["l2"] / lam)) < SHARE_TOLERANCE
            ),
            None,
        )
        if twin is not None:
            row = dict(twin, rule=rule, l2=lam, shared_fit=twin["rule"])
        else:
            print(f"{name}: fitting rule {rule} (lambda_J = {lam:.4g}) ...", flush=True)
            try:
                row = _fit_one(name, rule, lam, aln, D, info)
            except MemoryError as err:  # refused by the up-front check: recorded, retried next time
                report.setdefault("refused", []).append(dict(family=name, rule=rule, error=str(err)))
                write_json(out, report)
                print(f"{name} {rule}: refused: {err}", flush=True)
                continue
        report["runs"].append(row)
        write_json(out, report)  # after every fit: a stopped run keeps what it measured
        print(
            f"{name} {rule}: lambda_J {lam:.4g}, PPV@L {row['ppv']['L']:.3f}, fit {row['fit_seconds']:.1f} s"
            + (f" (shared with {row['shared_fit']})" if "shared_fit" in row else ""),
            flush=True,
        )
    return report


def _c_tools():
    """benchmarks/peers/c_tools.py (CCMpred and plmc when installed)."""
    if str(HERE / "peers") not in sys.path:
        sys.path.insert(0, str(HERE / "peers"))
    import c_tools

    return c_tools


def run_peers(report: dict, families, tools, out: Path, threads: int | None = None) -> dict:
    """Run the C peers (`c_tools`) that are installed on every family not yet measured, scored
    like the panel's fits; a tool that is absent (or fails) leaves one note in ``peer_notes``."""
    from jaxpotts._report import write_json

    c_tools = _c_tools()
    report.setdefault("peers", [])
    notes = report["peer_notes"] = {}
    found = {t: c_tools.executable(t) for t in tools}
    for tool, exe in found.items():
        if exe is None:
            notes[tool] = c_tools.skip_note(tool)
            print(notes[tool], flush=True)
    for name in families:
        done = {r["tool"] for r in report["peers"] if r["family"] == name}
        todo = [t for t, exe in found.items() if exe is not None and t not in done]
        if not todo:
            continue
        aln, D, info = _family_info(report, name, out)
        for tool in todo:
            if tool in notes:  # failed on an earlier family
                continue
            load0 = os.getloadavg()
            print(f"{name}: running {tool} ({found[tool]}) ...", flush=True)
            try:
                res = c_tools.run_tool(tool, found[tool], aln, threads=threads)
            except (RuntimeError, ValueError) as err:
                notes[tool] = f"{tool} failed on {name}: {err}"
                print(notes[tool], flush=True)
                continue
            row = dict(family=name, tool=tool, ppv=c_tools.score(res["scores"], D), seconds=res["seconds"])
            row.update(L=info["L"], M=info["M"], executable=res["executable"], command=res["command"])
            row.update(load_before=load0, load_after=os.getloadavg())
            row["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            report["peers"].append(row)
            print(f"{name} {tool}: PPV@L {row['ppv']['L']:.3f}, {row['seconds']:.1f} s", flush=True)
        write_json(out, report)
    write_json(out, report)
    return report


def peer_rows(report: dict) -> list[dict]:
    """The peers' table: this run's rows (`run_peers`), then the issue's reference figures."""
    fmt = lambda ppv, s: (  # noqa: E731
        "/".join(f"{ppv[k]:.3f}" if k in ppv else "-" for k in ("L/5", "L/2", "L")),
        "-" if s is None else f"{s:.1f} s",
    )
    rows = []
    for r in report.get("peers", []):
        ppv, sec = fmt(r["ppv"], r["seconds"])
        rows.append(dict(family=r["family"], tool=r["tool"], **{"PPV@L/5 / L/2 / L": ppv, "wall time": sec}))
    for family, tools in _c_tools().REFERENCE.items():
        for tool, ref in tools.items():
            ppv, sec = fmt(ref["ppv"], ref["seconds"])
            rows.append(dict(family=family, tool=f"{tool} (issue 15)", **{"PPV@L/5 / L/2 / L": ppv, "wall time": sec}))
    return rows


def choose_held_out(table: dict, names: list, reference: str) -> list[dict]:
    """Leave one family out: for each family of `table` (family -> name -> PPV@L, every name
    present), the name with the best mean PPV@L on the *other* families (ties: the earlier name)
    and its PPV@L on this family, beside this family's own best and the `reference`'s PPV@L."""
    rows = []
    for held in table:
        others = [f for f in table if f != held]
        if not others:
            continue
        means = {n: sum(table[f][n] for f in others) / len(others) for n in names}
        chosen = max(names, key=lambda n: (means[n], -list(names).index(n)))
        best = max(names, key=lambda n: table[held][n])
        rows.append(
            dict(
                held_out=held,
                chosen=chosen,
                mean_on_others=means[chosen],
                ppv_L_held_out=table[held][chosen],
                best_held_out=best,
                best_ppv_L=table[held][best],
                reference_ppv_L=table[held][reference],
            )
        )
    return rows


def leave_one_out(report: dict, rules) -> list[dict]:
    """`choose_held_out` over the families with every rule measured (reference: plmDCA's 0.01,
    or the first rule when it is not among them)."""
    table = {}
    for r in report["runs"]:
        table.setdefault(r["family"], {})[r["rule"]] = r["ppv"]["L"]
    complete = {f: table[f] for f in FAMILIES if f in table and all(r in table[f] for r in rules)}
    return choose_held_out(complete, list(rules), _reference(rules)) if rules else []


def _reference(rules) -> str:
    return "plmdca" if "plmdca" in rules else list(rules)[0]


def print_report(report: dict, rules) -> None:
    from jaxpotts._report import markdown_table

    rows = []
    for name in FAMILIES:
        runs = {r["rule"]: r for r in report["runs"] if r["family"] == name}
        if not runs:
            continue
        info = report["families"][name]
        row = dict(family=name, L=info["L"], M=info["M"], M_eff=round(info["m_eff"], 1))
        for rule in rules:
            r = runs.get(rule)
            row[rule] = (
                f"{r['ppv']['L/5']:.3f}/{r['ppv']['L/2']:.3f}/{r['ppv']['L']:.3f} ({r['fit_seconds']:.0f} s)"
                if r
                else "-"
            )
        rows.append(row)
    print("PPV@L/5 / L/2 / L (fit time) per rule; lambda_J of each rule in the JSON")
    print(markdown_table(rows, ["family", "L", "M", "M_eff", *rules]))
    peers = peer_rows(report)
    print("\npeers: PPV@L/5 / L/2 / L and the tool's wall time (its process), scored as above")
    print(markdown_table(peers, list(peers[0])))
    for note in report.get("peer_notes", {}).values():
        print(note)
    loo = leave_one_out(report, rules)
    if loo:
        print("\nleave-one-family-out (rule chosen by mean PPV@L on the other families):")
        print(markdown_table(loo, list(loo[0]), floats="{:.3f}"))
        n = len(loo)
        print(
            f"mean PPV@L held out: chosen {sum(r['ppv_L_held_out'] for r in loo) / n:.3f}, "
            f"{_reference(rules)} {sum(r['reference_ppv_L'] for r in loo) / n:.3f}, per-family best {sum(r['best_ppv_L'] for r in loo) / n:.3f}"
        )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    p.add_argument("--rules", nargs="+", choices=list(RULES), default=list(RULES))
    p.add_argument("--out", type=Path, default=HERE / "results" / "panel.json")
    p.add_argument("--quick", action="store_true", help="PF00014 with rules plmdca and ccmpred")
    p.add_argument("--report", action="store_true", help="print the table of the JSON, fit nothing")
    p.add_argument(
        "--peers",
        default="auto",
        help="auto (default: CCMpred and plmc when on PATH or set by JAXPOTTS_CCMPRED/JAXPOTTS_PLMC), none, "
        "or a comma list such as ccmpred,plmc (benchmarks/peers/c_tools.py)",
    )
    args = p.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
    import jaxpotts  # noqa: F401  (sets JAX up: one device per core, the compilation cache)

    if args.quick:
        args.families, args.rules = ["PF00014"], ["plmdca", "ccmpred"]
        if args.out == p.get_default("out"):
            args.out = HERE / "results" / "panel_quick.json"
    rules = [r for r in RULES if r in args.rules]
    try:
        peers = _c_tools().parse_peers(args.peers)
    except ValueError as err:
        p.error(str(err))
    if peers and not args.report:  # first: minutes, where the grid of fits takes hours
        run_peers(_load(args.out), args.families, peers, args.out)
    report = _load(args.out) if args.report else run_panel(args.families, rules, args.out)
    for tool in peers if args.report else ():  # say which requested tools are absent now (not stored)
        notes = report.setdefault("peer_notes", {})
        if tool not in notes and _c_tools().executable(tool) is None:
            if not any(r["tool"] == tool for r in report.get("peers", [])):
                notes[tool] = _c_tools().skip_note(tool)
    print_report(report, rules)
    return 0


if __name__ == "__main__":
    sys.exit(main())
