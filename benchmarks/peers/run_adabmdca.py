#!/usr/bin/env python
"""Run adabmDCA's mean-field contact prediction on a protein alignment; write scores as JSON.

Peer measurement for ``benchmarks/contacts.py``; run with the project venv (adabmDCA 1.0.0,
torch CPU)::

    .venv/bin/python benchmarks/peers/run_adabmdca.py ../shared/data/pfam/PF00014.fasta \
        --method mf --out /tmp/pf14_adabm_mf.json

This is the Python adabmDCA (PyPI ``adabmDCA``), not the C++ adabmDCA of the issue's reference
table. Its only non-sampling method is mean-field DCA: ``adabmDCA contacts -d MSA`` without a
model, i.e. ``adabmDCA.api.contacts.predict_contacts(fasta_path=..., pseudocount=0.5)``.
bmDCA / eaDCA / edDCA training (``adabmDCA train``) is Boltzmann learning by MCMC sampling and
is not run here.

What it does with its defaults (adabmDCA 1.0.0 source):

- loads the alignment with ``invalid_sequences="drop"`` (a sequence with any letter outside
  ``-ACDEFGHIKLMNPQRSTVWY``, e.g. X or B, or lower-case inserts, is dropped whole) and
  ``remove_duplicates=True``; '.' is normalised to '-';
- weights 1/#{j : identity(i, j) > 0.8} (identity over all L columns, gaps included);
- frequencies with pseudocount 0.5, covariance over the 20 non-gap states, J = -C^{-1};
- zero-sum gauge over all 21 states (gap couplings 0), Frobenius norm over the 20 amino acids,
  APC F - F_i. F_.j / F_.. with sums over the full (zero-diagonal) matrix, zero diagonal.
- float32 on CPU, torch threads = --threads (default 2).

A2M inserts are dropped here before the alignment is given to the tool (it would otherwise
drop every sequence with an insert). Indices are 0-based match columns.
``seconds``: from the start of this script (before importing torch) to scores ready.
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
    ap.add_argument("--method", choices=["mf"], default="mf")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from importlib.metadata import version

    from adabmDCA.api.contacts import predict_contacts

    tmpdir = tempfile.mkdtemp(prefix="adabm_")
    msa = os.path.join(tmpdir, "msa.fasta")
    n_seqs, L = match_columns_fasta(args.alignment, msa)
    result = predict_contacts(fasta_path=msa, alphabet="protein", pseudocount=0.5, device="cpu", dtype="float32")
    S = np.asarray(result.scores, dtype=np.float64)
    S = 0.5 * (S + S.T)  # symmetric up to float32 rounding already
    np.fill_diagonal(S, 0.0)
    seconds = time.perf_counter() - _T0
    os.remove(msa)
    os.rmdir(tmpdir)
    if S.shape != (L, L):
        raise SystemExit(f"unexpected score shape {S.shape} for L={L}")

    write_result(
        args.out,
        tool="adabmDCA",
        method="mf",
        version=version("adabmDCA"),
        torch=torch.__version__,
        params={"seqid": 0.8, "pseudocount": 0.5, "dtype": "float32", "torch_threads": torch.get_num_threads()},
        alignment=args.alignment,
        L=L,
        sequences=n_seqs,
        scores=S,
        seconds=seconds,
    )


if __name__ == "__main__":
    main()
