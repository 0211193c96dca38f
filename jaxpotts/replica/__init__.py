r"""Replica theory of learning one Potts conditional with factored attention (THEORY.md section 3).

Public API::

    Scenario(q, U, rho, kind="star" | "independent")
    solve(scenario, alpha, lam, *, tol, max_steps, damping, init, integrator, throw) -> Solution
    RESULTS                               outcome enumeration of a solve
    GaussHermite(n), MonteCarlo(n, seed)  integrators for the channel averages
    learning_curve(scenario, alphas, lams) -> tidy table (dict of numpy arrays)
    write_csv / write_json / read_csv     store tables
    bayes_optimal(scenario, alpha), bayes_curve   Bayes-optimal state evolution
    optimal_lambda(scenario, alpha), optimal_lambda_curve   ridge minimising the test loss
    simulate(scenario, alpha, lam, *, N, key, n_seeds)   finite-N experiment, mean and stderr

The derivation is in docs/replica.md.
"""

from .scenario import KINDS, Scenario
from .integrals import GaussHermite, MonteCarlo, default_integrator
from ._fixed_point import RESULTS
from .solver import Solution, default_tol, saddle_point_update, solve
from .bayes import BayesSolution, OptimalLambda, bayes_curve, bayes_optimal, optimal_lambda, optimal_lambda_curve
from .simulate import OBSERVABLES, SimulationResult, fit_conditional, sample_scenario, simulate
from .curve import TABLE_COLUMNS, learning_curve, read_csv, result_messages, write_csv, write_json

__all__ = [
    "KINDS",
    "Scenario",
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
    "write_csv",
    "write_json",
    "BayesSolution",
    "OptimalLambda",
    "bayes_curve",
    "bayes_optimal",
    "optimal_lambda",
    "optimal_lambda_curve",
    "OBSERVABLES",
    "SimulationResult",
    "fit_conditional",
    "sample_scenario",
    "simulate",
]
