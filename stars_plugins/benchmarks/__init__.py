"""Tooling beside the library: benchmarks, the evaluation and the `stars serve` load test.

`stars bench`, `stars eval` and `stars demo` run these; nothing in the runtime imports them.
- `strategies.py`: strategies x batch sizes, concurrent callers, the reward model alone;
- `speed.py`: engine overhead against transformers' `generate`, the causal reward's prefix cache;
- `evaluation.py`: refusal / over-refusal / reward per strategy on a prompt set (`stars eval`);
- `serve_load.py`: `stars bench --serve`, a load test of `stars serve` on loopback.
"""
