"""Names vulture cannot see used: public API read by users, tests and examples, and attributes
set for their side effect (argparse, warnings). Regenerate with
`vulture jaxpotts --min-confidence 60 --make-whitelist` and review each line."""

# ruff: noqa
_.from_factored  # unused method (jaxpotts/attention.py:240)
_.to_factored  # unused method (jaxpotts/attention.py:321)
_.required  # unused attribute (jaxpotts/cli/__init__.py:46)
_.showwarning  # unused attribute (jaxpotts/cli/__init__.py:89)
_.error  # unused method (jaxpotts/cli/_common.py:33)
_.from_options  # unused method (jaxpotts/engine.py:226)
rel_err_J  # unused variable (jaxpotts/evaluation.py:52)
asymmetry  # unused variable (jaxpotts/evaluation.py:54)
max_grad_norm  # unused variable (jaxpotts/replica/simulate.py:63)
final_states  # unused variable (jaxpotts/sampling.py:621)
wall_time  # unused variable (jaxpotts/training.py:103)
_.wall_time  # unused attribute (jaxpotts/training.py:502)
_.score  # unused method (jaxpotts/mutations.py: MutationModel.score, public API)
