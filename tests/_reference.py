"""Direct (loop-by-loop, float64) references shared by several test modules."""

import numpy as np


def pseudo_likelihood_sum(h, J, seqs, w, gap=None):
    r"""$\sum_m w_m \sum_{i: s_i \ne gap} -\log p_i(s_i \mid \text{non-gap neighbours})$, each
    conditional over the non-gap colours (gap=None: every colour, the ordinary pseudo-likelihood)."""
    h, J, w = (np.asarray(x, np.float64) for x in (h, J, w))
    seqs = np.asarray(seqs).astype(int)
    L, q = h.shape
    colours = [a for a in range(q) if a != gap]
    total = 0.0
    for m in range(seqs.shape[0]):
        s = seqs[m]
        for i in range(L):
            if s[i] == gap:
                continue
            phi = {a: h[i, a] + sum(J[i, j, a, s[j]] for j in range(L) if j != i and s[j] != gap) for a in colours}
            total += w[m] * (np.log(sum(np.exp(v) for v in phi.values())) - phi[s[i]])
    return total
