"""Searchers on top of ``run_trial``: the YAML search space and the Optuna backend (Ray imports lazily)."""
