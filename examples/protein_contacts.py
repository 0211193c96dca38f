r"""Residue contacts of real protein families: plmDCA and factored attention side by side.

For each Pfam family in ``shared/data/pfam`` (PF00014, the Kunitz/BPTI domain, L = 53; PF00763,
L = 116) the alignment is read (insert columns dropped), its sequences are weighted at 80%
identity, and two models are fitted by pseudo-likelihood with `jaxpotts.contacts.pipeline`:

* plmDCA: a dense Potts model, L conditionals fitted at once by L-BFGS (lambda_J = max(0.01, 0.01 (q-1)(L-1)/M_eff));
* factored attention: 32 softmax heads with $q \times q$ value matrices; its couplings
  $J_{ij}(a,b) = \sum_h A^h_{ij} V^h(a,b)$ are scored the same way.

Pairs are ranked by the APC-corrected Frobenius norm of the zero-sum-gauge couplings (gaps left
out), and compared with the structure: contact = minimum heavy-atom distance < 8 A, |i - j| >= 5.

    python examples/protein_contacts.py --quick      # PF00014 only (about a minute)
    python examples/protein_contacts.py              # both families, both methods (~10 min on 2 cores)
    python examples/protein_contacts.py --smoke      # a 300-sequence subsample of PF00014, seconds

Writes ``contacts_<family>.png/.pdf`` (top-L predictions of both methods above the diagonal,
true contacts below), ``precision.md`` and ``results.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from jaxpotts.sharding import use_cpu_cores

PFAM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfam"
FAMILIES = {"PF00014": ("PF00014.fasta", "PF00014_struct.dat"), "PF00763": ("PF00763.fasta", "PF00763_distances.dat")}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="PF00014 only")
    ap.add_argument("--smoke", action="store_true", help="a 300-sequence subsample of PF00014, few iterations (tests)")
    ap.add_argument("--pfam", type=Path, default=PFAM, help="folder with the alignments and distance files")
    ap.add_argument("--out", type=Path, default=Path("protein_contacts_out"))
    ap.add_argument("--quiet", action="store_true")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    use_cpu_cores()  # one JAX device per core: the fits split the sequences over them
    import jax
    from matplotlib.figure import Figure

    from jaxpotts import contacts, msa, plotting

    say = (lambda *a: None) if args.quiet else print
    families = ["PF00014"] if (args.quick or args.smoke) else list(FAMILIES)
    methods = {"plm": {}, "attention": {}}
    if args.smoke:
        methods = {"plm": dict(n_steps=15), "attention": dict(n_heads=4, head_dim=4, n_steps=15)}
    args.out.mkdir(parents=True, exist_ok=True)
    results, lines = (
        {},
        [
            "| family | L | M | M_eff | method | fit (s) | iterations | PPV@L/5 | PPV@L/2 | PPV@L |",
            "|---|---|---|---|---|---|---|---|---|",
        ],
    )
    for fam in families:
        aln_file, dist_file = FAMILIES[fam]
        aln = msa.read_alignment(args.pfam / aln_file)
        if args.smoke:
            keep = np.sort(np.random.default_rng(0).choice(aln.M, 300, replace=False))
            aln = dataclasses.replace(
                aln, seqs=aln.seqs[keep], rows=aln.rows[keep], names=tuple(aln.names[i] for i in keep)
            )
        D = contacts.read_distances(args.pfam / dist_file, L=aln.L)
        C = contacts.contact_map(D)
        fig = Figure(figsize=(10, 5.4), layout="constrained")
        results[fam] = {}
        for k, (method, options) in enumerate(methods.items()):
            res = contacts.pipeline(aln, method, progress=False if args.quiet else None, **options)
            ppv = res.precision(D)
            results[fam][method] = dict(
                L=aln.L,
                M=aln.M,
                m_eff=res.m_eff,
                seconds=res.seconds,
                iterations=int(res.history.step[-1]),
                precision=ppv,
            )
            lines.append(
                f"| {fam} | {aln.L} | {aln.M} | {res.m_eff:.0f} | {method} | {res.seconds['fit']:.1f} | "
                f"{int(res.history.step[-1])} | {ppv['L/5']:.3f} | {ppv['L/2']:.3f} | {ppv['L']:.3f} |"
            )
            say(lines[-1])
            contacts.plot_contact_map(
                res.scores,
                C,
                aln.L,
                known=np.isfinite(D),
                ax=fig.add_subplot(1, 2, k + 1),
                title=f"{fam} {method}: PPV@L = {ppv['L']:.2f}",
            )
        plotting.save_figure(fig, args.out / f"contacts_{fam}.png")
    (args.out / "precision.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(
        json.dumps({"devices": [str(d) for d in jax.devices()], "results": results}, indent=2) + "\n"
    )
    say(f"wrote {args.out}/precision.md, results.json, contacts_<family>.png/pdf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
