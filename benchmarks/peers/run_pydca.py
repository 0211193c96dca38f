#!/usr/bin/env python
"""Run pydca (plmDCA or mean-field DCA) on a protein alignment; write APC'ed Frobenius scores as JSON.

Peer measurement for ``benchmarks/contacts.py``. Run it with the interpreter of a separate
virtualenv that has pydca, e.g.::

    /work/peers/pydca-venv/bin/python benchmarks/peers/run_pydca.py \
        ../shared/data/pfam/PF00014.fasta --method plm --out /tmp/pf14_pydca_plm.json

Install (pydca 1.23 pins scipy==1.3.1, numpy<=1.15.4, numba==0.46, which do not exist for
Python 3.11; its plmDCA and mean-field modules run fine with current releases)::

    python3 -m venv /work/peers/pydca-venv
    /work/peers/pydca-venv/bin/pip install setuptools wheel
    /work/peers/pydca-venv/bin/pip install --no-deps --no-build-isolation pydca==1.23
    /work/peers/pydca-venv/bin/pip install numpy numba scipy biopython

What the tool does with its defaults (read from pydca 1.23's source):

- plm: ``pydca.plmdca.PlmDCA(msa, 'protein', seqid=0.8, lambda_h=0.2*(L-1),
  lambda_J=0.2*(L-1), max_iterations=100, num_threads=...)``. C++ backend (OpenMP):
  symmetric pseudo-likelihood (one J_ij per pair, all sites' conditionals summed), L-BFGS
  (m=5, epsilon=1e-3, ftol=1e-4, max_linesearch=5) in float32, penalty
  lambda*||theta||^2 added to the *weighted sum* (not mean) of negative log conditionals, like
  CCMpred's lambda_pair = 0.2*(L-1) (but pydca also puts 0.2*(L-1) on the fields).
  Duplicate sequences are removed first; weight 1/#{j : identity(i, j) > 0.8} with identity =
  fraction of identical positions (gaps included) over all L columns. The backend reads the
  file one line per sequence, so a wrapped or A2M file must be rewritten (done here).
- mf: ``pydca.meanfield_dca.MeanFieldDCA(msa, 'protein', pseudocount=0.5, seqid=0.8)``
  (numba; same weights and de-duplication), couplings = -C^{-1} over the 20 non-gap states.
- Scores (both): 20 x 20 non-gap block of J_ij, double-centred over that block, Frobenius norm,
  APC with means over the L-1 partners of each site (``compute_sorted_FN_APC``). Pair (i, j)
  are 0-based indices of the columns of the file given to the tool; here those are exactly the
  alignment's match columns (A2M inserts dropped), i.e. distance-file index - 1.
- Letters: the 20 amino acids; '-', '.', '~' and B, J, O, U, X, Z become the gap state.

The JSON ``seconds`` is measured from the start of this script (before importing pydca) to the
moment the scores are ready, so it includes reading, weighting, fitting, scoring and, for mf,
numba compilation (pydca does not cache its jitted functions).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse
import os
import tempfile

from _peer import match_columns_fasta, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("alignment")
    ap.add_argument("--method", choices=["plm", "mf"], required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2, help="OpenMP threads of plmDCA / numba threads (default 2)")
    ap.add_argument("--max-iterations", type=int, default=None, help="plm only; pydca's default is 100")
    args = ap.parse_args()

    # Thread settings must be in place before numba / numpy load.
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    from importlib.metadata import version

    import numpy as np

    tmpdir = tempfile.mkdtemp(prefix="pydca_")
    msa = os.path.join(tmpdir, "msa.fasta")
    n_seqs, L = match_columns_fasta(args.alignment, msa)

    if args.method == "plm":
        from pydca.plmdca import plmdca

        inst = plmdca.PlmDCA(msa, "protein", seqid=0.8, max_iterations=args.max_iterations, num_threads=args.threads)
        pairs = inst.compute_sorted_FN_APC()
        params = {
            "seqid": inst.sequence_identity,
            "lambda_h": inst.lambda_h,
            "lambda_J": inst.lambda_J,
            "max_iterations": inst.max_iterations,
            "num_threads": args.threads,
        }
    else:
        from pydca.meanfield_dca import meanfield_dca

        inst = meanfield_dca.MeanFieldDCA(msa, "protein", seqid=0.8)
        pairs = inst.compute_sorted_FN_APC()
        params = {
            "seqid": inst.sequence_identity,
            "pseudocount": inst.pseudocount,
            "M_eff": float(inst.effective_num_sequences),
            "num_unique_sequences": inst.num_sequences,
            "numba_threads": int(os.environ["NUMBA_NUM_THREADS"]),
        }

    S = np.zeros((L, L))
    for (i, j), s in pairs:
        S[i, j] = S[j, i] = float(s)
    seconds = time.perf_counter() - _T0

    os.remove(msa)
    os.rmdir(tmpdir)
    write_result(
        args.out,
        tool="pydca",
        method=args.method,
        version=version("pydca"),
        params=params,
        alignment=args.alignment,
        L=L,
        sequences=n_seqs,
        scores=S,
        seconds=seconds,
    )


if __name__ == "__main__":
    main()
