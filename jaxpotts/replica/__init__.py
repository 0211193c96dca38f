r"""Replica theory of learning one Potts conditional with factored attention (docs/theory.md,
section 4 "The replica scenario").

Public API::

    Scenario(q, U, rho, kind="star" | "independent")
    l2_from_lam(lam, alpha, U), lam_from_l2   the ridge lam <-> the package's L2 (plmDCA lambda_J)
    solve(scenario, alpha, lam, *, tol, max_steps, damping, init, integrator, throw) -> Solution
    RESULTS                               outcome enumeration of a solve
    GaussHermite(n), MonteCarlo(n, seed)  integrators for the channel averages
    learning_curve(scenario, alphas, lams) -> tidy table (dict of numpy arrays)
    write_table_csv / write_table_json / read_csv     store tables
    bayes_optimal(scenario, alpha), bayes_curve   Bayes-optimal state evolution
    optimal_lambda(scenario, alpha), optimal_lambda_curve   ridge minimising the test loss
    simulate(scenario, alpha, lam, *, N, key, n_seeds)   finite-N experiment, mean and stderr

The equations are stated in docs/theory.md (section 4) and derived in docs/replica.md.

Module map (one concept per module; modules import only public names from each other):
`scenario` (the scenario, its colour geometry B, the ridge <-> L2 mapping), `proximal` (the
student's K-dimensional proximal map), `integrals` (quadrature rules and channel averages),
`_fixed_point` (the damped/Anderson fixed-point iteration with implicit derivatives, the
`RESULTS` enumeration and its integer codes), `solver` (the saddle point of one (alpha, lam),
and the solver API that `curve` and `bayes` build on), `curve` (learning-curve tables),
`bayes` (Bayes-optimal error, optimal ridge), `simulate` (finite-N experiments).
"""

from ._fixed_point import RESULTS
from .bayes import BayesSolution, OptimalLambda, bayes_curve, bayes_optimal, optimal_lambda, optimal_lambda_curve
from .curve import TABLE_COLUMNS, learning_curve, read_csv, result_messages, write_table_csv, write_table_json
from .curve import write_csv as write_csv  # deprecated (table, path) order, one release
from .curve import write_json as write_json  # deprecated (table, path) order, one release
from .integrals import GaussHermite, MonteCarlo, default_integrator
from .scenario import KINDS, Scenario, l2_from_lam, lam_from_l2
from .simulate import OBSERVABLES, SimulationResult, conditional_model, fit_conditional, sample_scenario, simulate
from .solver import Solution, default_tol, saddle_point_update, solve

__all__ = [
    "KINDS",
    "Scenario",
    "l2_from_lam",
    "lam_from_l2",
    "GaussHermite",
    "MonteCarlo",
    "default_integrator",
    "RESULTS",
    "Solution",
    "default_tol",
    "saddle_point_update",
    "solve",
    "TABLE_COLUMNS",
    "learning_curve",
    "read_csv",
    "result_messages",
    "write_table_csv",
    "write_table_json",
    "BayesSolution",
    "OptimalLambda",
    "bayes_curve",
    "bayes_optimal",
    "optimal_lambda",
    "optimal_lambda_curve",
    "OBSERVABLES",
    "SimulationResult",
    "fit_conditional",
    "conditional_model",
    "sample_scenario",
    "simulate",
]
