"""Protein contact prediction on real Pfam families: wall time and precision, with peers.

    python benchmarks/contacts.py                      # PF00014 and PF00763, plm and attention
    python benchmarks/contacts.py --quick              # PF00014, plm only, one repeat
    python benchmarks/contacts.py --peers pydca-plm pydca-mf adabmdca-mf \
        --pydca-python /work/peers/pydca-venv/bin/python       # + peers (see benchmarks/peers/)

Each measurement is the *whole process*, timed from outside: `jaxpotts contacts ALIGNMENT
--method M` in a fresh interpreter (import, read, weight, fit, score, write the ranked pairs and
the score matrix), as a user would run it: the work a peer's wall time covers. The precision is
computed afterwards from the written scores (scores.npz), outside the timing; the contact-map
figure that `--distances` adds (matplotlib, ~0.45 s for PF00014) is not drawn. jaxpotts
compiles its programs on first use; the CLI keeps XLA's persistent
compilation cache (`jaxpotts contacts --help`), so the first run on a machine ("cold": empty
cache) pays for compilation and later runs ("warm") do not. Both are reported; the warm run is
the steady state. Contacts: minimum heavy-atom distance < 8 A, |i - j| >= 5, pairs with unknown
distance left out. Peers run in their own processes, timed the same way, when installed.

Prints a table and writes JSON (default benchmarks/results/contacts.json) with the device, the
versions and every run. Runs unchanged on any JAX backend.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PFAM = HERE.parent.parent / "shared" / "data" / "pfam"
FAMILIES = {
    "PF00014": ("PF00014.fasta", "PF00014_struct.dat"),
    "PF00763": ("PF00763.fasta", "PF00763_distances.dat"),
}
sys.path.insert(0, str(HERE / "peers"))
from c_tools import REFERENCE as C_TOOLS_REFERENCE  # noqa: E402  (the one table of CCMpred's and plmc's figures)

# Measured by the authors on this 2-core machine (2 threads): wall time, PPV@L/5, L/2, L
# (CCMpred and plmc where all four are given: benchmarks/peers/c_tools.py).
REFERENCE = {
    **{
        (family, {"ccmpred": "CCMpred", "plmc": "plmc"}[tool]): (
            r["seconds"],
            *(r["ppv"][k] for k in ("L/5", "L/2", "L")),
        )
        for family, tools in C_TOOLS_REFERENCE.items()
        for tool, r in tools.items()
        if r["seconds"] is not None and len(r["ppv"]) == 3
    },
    ("PF00014", "mean-field (adabmDCA)"): (3.2, 1.000, 0.885, 0.887),
    ("PF00763", "mean-field (adabmDCA)"): (12.1, 1.000, 0.948, 0.888),
}


def run_jaxpotts(family: str, method: str, cache: Path, generation: bool, extra: list[str]) -> dict:
    aln, dist = FAMILIES[family]
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            "-m",
            "jaxpotts.cli",
            "contacts",
            str(PFAM / aln),
            "--method",
            method,
            "--out",
            out,
            "--quiet",
            *extra,
        ]
        if generation:
            cmd.append("--generation-check")
        env = dict(os.environ, JAXPOTTS_CACHE_DIR=str(cache))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        report = json.loads((Path(out) / "contacts.json").read_text())
        report["precision"] = _written_precision(Path(out) / "scores.npz", PFAM / dist)
    report["wall_seconds"] = wall
    return report


def _written_precision(scores_npz: Path, distances: Path) -> dict:
    """PPV@L/5, L/2, L of the scores the CLI wrote, against the distances of its match columns."""
    import numpy as np

    from jaxpotts.contacts import read_distances

    z = np.load(scores_npz)
    cols = z["columns"]
    D = read_distances(distances)
    if D.shape[0] <= cols.max():  # the last columns have no listed distance
        D = np.pad(D, (0, int(cols.max()) + 1 - D.shape[0]), constant_values=np.nan)
    return _precision(z["scores"], D[np.ix_(cols, cols)])


def _precision(S, D) -> dict:
    """PPV@L/5, L/2, L of scores S against distances D over the same sites, unknown pairs left out."""
    import numpy as np

    from jaxpotts.contacts import contact_map, precision_at

    return precision_at(S, contact_map(D), known=np.isfinite(D))


# name -> (runner script in benchmarks/peers, method, interpreter option: which python runs it)
PEERS = {
    "pydca-plm": ("run_pydca.py", "plm", "pydca_python"),
    "pydca-mf": ("run_pydca.py", "mf", "pydca_python"),
    "adabmdca-mf": ("run_adabmdca.py", "mf", None),
}


def run_peer(python: str, script: Path, family: str, method: str) -> dict:
    import numpy as np

    from jaxpotts.contacts import read_distances

    aln, dist = FAMILIES[family]
    with tempfile.TemporaryDirectory() as out:
        path = Path(out) / "scores.json"
        t0 = time.perf_counter()
        proc = subprocess.run(
            [python, str(script), str(PFAM / aln), "--method", method, "--out", str(path)],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"peer {script.name} failed:\n{proc.stderr[-3000:]}")
        res = json.loads(path.read_text())
    S = np.asarray(res.pop("scores"), dtype=float)
    np.fill_diagonal(S, 0.0)
    res["precision"] = _precision(S, read_distances(PFAM / dist, L=S.shape[0]))
    res["wall_seconds"] = wall
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--methods", nargs="+", default=["plm", "attention"], choices=["plm", "attention"])
    ap.add_argument("--warm-repeats", type=int, default=2, help="warm runs after the cold one (best is reported)")
    ap.add_argument("--generation-check", action="store_true", help="also sample each fitted model (slow)")
    ap.add_argument(
        "--peers",
        nargs="*",
        default=[],
        choices=list(PEERS),
        help="peers to run in the same session (pydca needs its own virtualenv: --pydca-python)",
    )
    ap.add_argument(
        "--pydca-python", default=None, help="interpreter with pydca installed (benchmarks/peers/run_pydca.py)"
    )
    ap.add_argument("--quick", action="store_true", help="PF00014, plm, one warm run")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "contacts.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.families, args.methods, args.warm_repeats = ["PF00014"], ["plm"], 1

    import jax

    from jaxpotts import __version__

    rows, runs = [], []
    cache_root = Path(tempfile.mkdtemp(prefix="jaxpotts-bench-cache-"))
    try:
        for family in args.families:
            for method in args.methods:
                cache = cache_root / f"{family}-{method}"
                cold = run_jaxpotts(family, method, cache, False, [])
                warm = [run_jaxpotts(family, method, cache, False, []) for _ in range(args.warm_repeats)]
                # The generation check (sampling the fitted model) runs apart, so it is not timed.
                gen = run_jaxpotts(family, method, cache, True, [])["generation"] if args.generation_check else None
                best = min(warm, key=lambda r: r["wall_seconds"]) if warm else cold
                runs.append({"family": family, "method": method, "cold": cold, "warm": warm, "generation": gen})
                rows.append(
                    {
                        "family": family,
                        "L": cold["L"],
                        "M": cold["M"],
                        "M_eff": cold["m_eff"],
                        "tool": f"jaxpotts {method}",
                        "cold_s": cold["wall_seconds"],
                        "wall_s": best["wall_seconds"],
                        "fit_s": best["seconds"]["fit"],
                        "iterations": best["steps"],
                        **{f"PPV@{k}": v for k, v in best["precision"].items()},
                        **(
                            {
                                "gen_r_fi": gen["site"]["pearson"],
                                "gen_r_Cij": gen["connected"]["pearson"],
                                "gen_slope_Cij": gen["connected"]["slope"],
                            }
                            if gen
                            else {}
                        ),
                    }
                )
                print(_row_text(rows[-1]), flush=True)
            for name in args.peers:
                script, method, which = PEERS[name]
                python = getattr(args, which) if which else sys.executable
                if python is None:
                    print(f"peer {name}: give --{which.replace('_', '-')}", file=sys.stderr)
                    continue
                try:
                    res = run_peer(python, HERE / "peers" / script, family, method)
                except RuntimeError as err:
                    print(f"peer {name} on {family}: {err}", file=sys.stderr)
                    continue
                runs.append({"family": family, "peer": name, "result": res})
                rows.append(
                    {
                        "family": family,
                        "L": res.get("L"),
                        "tool": f"{name} {res.get('version', '')}".strip(),
                        "wall_s": res["wall_seconds"],
                        **{f"PPV@{k}": v for k, v in res["precision"].items()},
                    }
                )
                print(_row_text(rows[-1]), flush=True)
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)

    print()
    print(markdown(rows))
    out = {
        "benchmark": "contacts",
        "jaxpotts": __version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average": os.getloadavg(),
        "rows": rows,
        "runs": runs,
        "reference": {
            f"{f} {t}": dict(zip(("wall_s", "PPV@L/5", "PPV@L/2", "PPV@L"), v, strict=False))
            for (f, t), v in REFERENCE.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def _row_text(r: dict) -> str:
    return "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items())


def markdown(rows: list[dict]) -> str:
    """The table of benchmarks/README.md: our rows, then the reference measurements."""
    head = "| family | tool | wall time (warm) | cold | fit | iterations | PPV@L/5 | PPV@L/2 | PPV@L |"
    lines = [head, "|" + "---|" * 9]
    f = lambda v, p=3: "" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['tool']} | {f(r['wall_s'], 1)} s | {f(r.get('cold_s'), 1)}"
            f"{' s' if r.get('cold_s') else ''} | {f(r.get('fit_s'), 1)}{' s' if r.get('fit_s') else ''} | "
            f"{f(r.get('iterations'))} | {f(r.get('PPV@L/5'))} | {f(r.get('PPV@L/2'))} | {f(r.get('PPV@L'))} |"
        )
    for (fam, tool), (t, p5, p2, p1) in REFERENCE.items():
        lines.append(f"| {fam} | {tool} (reference) | {t} s | | | | {p5:.3f} | {p2:.3f} | {p1:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
