r"""One defaults table per fitting method, read by the library, the command line and the docs.

Each entry is a `Method`: the constructor arguments of the model it fits (`model`), the flat fit
options of `jaxpotts.fit` (`fit`, see `jaxpotts.engine.FitConfig.from_options`) and why they
were chosen (`why`). `jaxpotts.fit_plm`, `jaxpotts.contacts.pipeline` and `jaxpotts fit` /
`jaxpotts contacts` take their defaults from here and nowhere else; the CLI's help text quotes
them, and `markdown()` renders the table of docs/cli.md.

Regularisation is in the package's one convention (`jaxpotts.losses.l2_penalty`,
docs/conventions.md): $\lambda_J$ = `l2`, $\lambda_h$ = `l2_fields`, per effective sequence,
as plmDCA's `lambda_J`, `lambda_h`.

Adding a method: add an entry here and a module that builds its model (or, like plmDCA, a
start model) and calls `jaxpotts.fit`.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from typing import Any

__all__ = ["Method", "METHODS", "method", "markdown"]


@dataclasses.dataclass(frozen=True)
class Method:
    """Defaults of one fitting method. `model` and `fit` are read-only mappings."""

    name: str
    summary: str
    model: Mapping[str, Any]
    fit: Mapping[str, Any]
    why: str

    def __post_init__(self):
        object.__setattr__(self, "model", types.MappingProxyType(dict(self.model)))
        object.__setattr__(self, "fit", types.MappingProxyType(dict(self.fit)))

    def settings(self, **overrides: Any) -> dict:
        """The fit options with `overrides` applied. A length given in steps replaces a default
        given in epochs and the other way round; unknown names raise `TypeError`."""
        known = set(self.fit) | set(self.model) | _FIT_NAMES
        unknown = sorted(k for k in overrides if k not in known)
        if unknown:
            raise TypeError(f"unknown option(s) for method {self.name!r}: {', '.join(unknown)}")
        out = {**self.fit, **self.model, **overrides}
        for given, other in (("n_steps", "n_epochs"), ("n_epochs", "n_steps")):
            if overrides.get(given) is not None and other not in overrides:
                out.pop(other, None)
        return out


# Every flat option `jaxpotts.fit` accepts (kept in step with jaxpotts.engine._FLAT by a test).
_FIT_NAMES = {
    "optimizer",
    "learning_rate",
    "batch_size",
    "loss",
    "gaps",
    "couplings",
    "l2",
    "l2_fields",
    "n_steps",
    "n_epochs",
    "tol",
    "ftol",
    "patience",
    "target_loss",
    "restore_best",
    "eval_every",
    "checkpoint_path",
    "resume",
    "validation_fraction",
}

PLM = Method(
    name="plm",
    summary="asymmetric plmDCA: a dense Potts model fitted by pseudo-likelihood (all sites at once, full-batch L-BFGS)",
    # l2="auto": lambda_J = max(l2_floor, l2_factor (q-1)(L-1) / M_eff) (jaxpotts.training.plmdca_settings).
    model=dict(init="profile", l2_factor=0.01, l2_floor=0.01),
    fit=dict(l2="auto", l2_fields=0.01, optimizer="lbfgs", n_steps=300, ftol=3e-3, tol=1e-5),
    why="lambda_J = max(0.01, 0.01 (q-1)(L-1)/M_eff): plmDCA's per-M_eff 0.01 for deep alignments, the C tools' "
    "prior of fixed weight (CCMpred's 0.2 (L-1) absolute, plmc/GREMLIN's 0.01 (q-1)(L-1)) where that is stronger, "
    "i.e. M_eff < 20 (L-1) for proteins. Chosen on the contact panel cut to M_eff/L = 0.5, 1, 2, 5, 10 (3 seeds) and "
    "whole (benchmarks/README.md): the C tools' rule gained 0.008-0.020 mean PPV@L over 0.01 at every depth up to 10 "
    "and lost one pair on PF00595 whole, where it is weaker than 0.01; leave one family out, this rule is chosen for "
    "every family (held-out PPV@L 0.735 vs 0.724). Asymmetric and symmetric couplings tie (0.7367 vs 0.7368). "
    "lambda_h = 0.01. L-BFGS stops when the objective falls by less than 0.3% over 5 iterations, or after 300; on "
    "the panel at M_eff/L = 1, 5 and whole, stops at 0.1%, 0.3% and 1% give mean PPV@L within 0.008 of each other "
    "and leave one family out does not prefer another (held-out 0.778 vs 0.779); pass ftol=0, tol=1e-6 for full "
    "convergence.",
)

ATTENTION_CONTACTS = Method(
    name="attention",
    summary="factored attention for contacts (AttentionDCA-like): 32 softmax heads, values q x q, no fields",
    model=dict(n_heads=32, head_dim=23, softmax=True, fields=False, init_scale=0.1),
    fit=dict(l2=0.001, l2_fields=0.01, optimizer="adam", learning_rate=0.05, batch_size=1000, n_epochs=200),
    why="L2 on the implied couplings J_ij(a,b) = sum_h A^h_ij V^h(a,b) with lambda_J = 0.001 (0.01 over-regularises "
    "the product: PPV@L 0.87 instead of 0.94 on PF00014). Adam: the product A V is not convex; full-batch L-BFGS "
    "needed ~800 iterations for the precision Adam reaches in 200 epochs (PF00763: PPV@L 0.98 in 490 s vs 220 s).",
)

ATTENTION = Method(
    name="attention-layer",
    summary="one factored-attention layer on samples (the paper's setting): free L x L attention, fields",
    model=dict(n_heads=1, head_dim=8, softmax=False, fields=True),
    fit=dict(l2=0.0, l2_fields=0.0, optimizer="adam", batch_size=128, n_epochs=20, validation_fraction=0.1),
    why="The layer is the model class of the data (J_ij U(a,b)), so no regularisation; a 10% validation split keeps "
    "the best model; minibatches of 128 with Adam (learning rate 1e-2) reach the entropy floor in a few epochs.",
)

TRANSFORMER = Method(
    name="transformer",
    summary="the standard Transformer baseline (MLM with one random masked site per sequence)",
    model=dict(n_layers=1, n_heads=4, d_model=32, d_mlp=None),
    fit=dict(
        l2=0.0, l2_fields=0.0, optimizer="adam", batch_size=128, n_epochs=20, validation_fraction=0.1, loss="stochastic"
    ),
    why="The usual BERT-style training: a random masked site per sequence per step, Adam, early stopping on a "
    "validation split.",
)

MUTATIONS = Method(
    name="mutations",
    summary="plmDCA for mutation effects (EVmutation's rule): lambda_J = 0.01 (q-1)(L-1) / N_eff, lambda_h = 0.01 / N_eff",
    # The rule's constants (jaxpotts.mutations.plm_settings turns them into l2, l2_fields for
    # an alignment): weights at 0.8 identity, plmc's absolute lambdas, the independent model's
    # pseudocount.
    model=dict(theta=0.8, coupling_factor=0.01, fields_absolute=0.01, pseudocount=0.5),
    fit=dict(optimizer="lbfgs", n_steps=1000, ftol=0.0, tol=1e-6, gaps="state", couplings="symmetric"),
    why="EVmutation's protocol carried over, not tuned on DHFR: plmc's model (one symmetric coupling per pair in "
    "the pseudo-likelihood, couplings='symmetric', as plmc and CCMpred fit it) with plmc's lambda_e = 0.01 (q-1)(L-1) "
    "and lambda_h = 0.01 on an objective summed over sequences, divided by N_eff for the per-N_eff convention. No "
    "objective-change stop, L-BFGS to its gradient tolerance: fields of rare residues converge last and carry "
    "single-mutant scores (DHFR: a 1e-4 stop gives Spearman 0.398). DHFR under the same rule: symmetric 0.433, "
    "asymmetric (L conditionals, symmetrised afterwards) 0.428-0.430, EVmutation 0.435; half / twice lambda_J "
    "(asymmetric): 0.443 / 0.425, not adopted. Gaps stay a state: plmc's -g (gaps='missing') gives 0.432 "
    "symmetric and 0.421-0.424 asymmetric.",
)

BOLTZMANN = Method(
    name="bm",
    summary="bmDCA: a dense Potts model fitted by Boltzmann-machine learning on persistent Gibbs chains",
    model=dict(
        n_chains=1000,
        sweeps=10,
        pseudocount=0.01,
        start="profile",
        target=0.95,
        field_lr_factor=1.0,
        decay=2000.0,
        chunk=100,
        check_sweeps=400,
        backoff_lr=0.3,
        backoff_sweeps=2,
        max_backoffs=3,
    ),
    fit=dict(optimizer="adam", learning_rate=0.001, l2=0.001, l2_fields=0.0, n_steps=10000),
    why="Start from the independent-site model (its fields are already the data's one-site optimum, only "
    "couplings remain) with chains drawn from it, so the persistent chains start near equilibrium. Adam moves "
    "every parameter at about the same rate (the gradient's scale differs by orders of magnitude between "
    "fields and rare colour pairs); lr 0.01 reached a chunk-averaged Pearson of 0.97 on PF00014 within 150 "
    "updates but the frozen model's chains then gave 0.59 (split R-hat 1.9): the model moved faster than the "
    "chains mix. lr 0.001 (halved after 2000 updates) keeps the frozen model within reach of its chains "
    "(0.91 after 500 updates, R-hat 1.11). 1000 chains x 10 Gibbs sweeps per update: the gradient noise "
    "averages over updates; the check uses 400 sweeps (20 snapshots) because 1000 independent samples cap the "
    "Pearson of C_ij at 0.86 on PF00014, 10,000 at 0.98. Pseudocount 0.01. lambda_J = 0.001 keeps "
    "the couplings from growing on sampling noise, which slowed mixing: without it (PF00014, load 9-13) 0.90 "
    "came after 353 s but 0.95 not within 900 s (the frozen model's tau grew to 242 sweeps, R-hat 1.28); with "
    "it 0.80 / 0.90 / 0.95 after 157 / 400 / 664 s (800 updates, tau 27 sweeps, R-hat 1.04) under load 9.5, and after "
    "48 / 65 / 198 s on the quiet machine with the block-row sweeps, benchmarks/README.md. Back-off: on "
    "PF00763 (L = 116) the chains' statistics reached 0.98 while the frozen model's gave 0.72-0.80 (a 2000-sweep "
    "check confirmed 0.74, R-hat 1.04): the model outran its chains. 100 further updates at lr 1e-4 with 30 sweeps "
    "brought the frozen model to 0.93 (R-hat 1.06), so each check that fails although the chains' statistics reached "
    "the target multiplies the learning rate by 0.3 and the sweeps per update by 2 (at most 3 times).",
)

#: name -> Method.
METHODS: Mapping[str, Method] = types.MappingProxyType(
    {m.name: m for m in (PLM, ATTENTION_CONTACTS, ATTENTION, TRANSFORMER, MUTATIONS, BOLTZMANN)}
)


def method(name: str) -> Method:
    """The defaults of method `name` (a key of `METHODS`)."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None


def markdown() -> str:
    """The defaults table in Markdown (docs/cli.md holds it; a test keeps it current)."""
    rows = ["| method | what | model | fit | why |", "|---|---|---|---|---|"]
    for m in METHODS.values():
        fmt = lambda d: ", ".join(f"`{k}={v!r}`" for k, v in d.items())  # noqa: E731
        rows.append(f"| `{m.name}` | {m.summary} | {fmt(m.model)} | {fmt(m.fit)} | {m.why} |")
    return "\n".join(rows)
