"""Maintainer tooling for the built-in "harmless" reward: its preference data (`data/`), the
script that samples on-policy pairs (`make_policy_pairs.py`) and the head's training (`train.py`).

Not part of the `stars-plugins` wheel: run it from a clone, `python -m reward_training --help`.
"""
