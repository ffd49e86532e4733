"""xgrammar vs llguidance on the embedded policy's tokenizer (issue 18: pick by measurement).

For every schema of the structured-extraction bench: compile time, and per generated token the
time to fill the next-token mask and accept the token, walking the expected answer's tokens (the
compact layout both engines accept); plus rollback of a 16-token segment and copying a row's
state (xgrammar `fork`, llguidance `deep_copy`). Single thread, CPU.

    python scripts/compare_grammar_engines.py     # needs `pip install llguidance`
"""

from __future__ import annotations

import json
import statistics
import time

import torch


def main() -> None:
    import llguidance
    import llguidance.hf
    import llguidance.torch
    import xgrammar

    from stars_plugins.benchmarks.speed import embedded_tokenizer
    from stars_plugins.benchmarks.structured import load_extraction_prompts
    from stars_plugins.constraints import Constraint, ConstraintCompiler

    tokenizer = embedded_tokenizer()
    vocab = len(tokenizer)
    eos = [tokenizer.eos_token_id]
    t0 = time.perf_counter()
    xg = ConstraintCompiler(tokenizer, vocab, eos)
    xg_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    ll_tok = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab)
    ll_setup = time.perf_counter() - t0

    rows = load_extraction_prompts()
    schemas = {r["domain"]: r for r in rows}  # one schema per domain, with one expected answer
    report = {
        "xgrammar": {"setup_s": xg_setup, "compile_ms": [], "step_us": [], "rollback_us": [], "copy_us": []},
        "llguidance": {"setup_s": ll_setup, "compile_ms": [], "step_us": [], "rollback_us": [], "copy_us": []},
    }
    for row in schemas.values():
        constraint = Constraint.json_schema(row["schema"])
        answer = json.dumps(row["expected"], ensure_ascii=False)  # {"a": 1, "b": "x"}: the compact layout
        ids = tokenizer.encode(answer, add_special_tokens=False) + eos

        # ---- xgrammar
        t0 = time.perf_counter()
        compiled = xg.compile(constraint)
        report["xgrammar"]["compile_ms"].append((time.perf_counter() - t0) * 1e3)
        matcher = xgrammar.GrammarMatcher(compiled, max_rollback_tokens=64)
        bitmask = xgrammar.allocate_token_bitmask(1, vocab)
        start = time.perf_counter()
        for token in ids:
            matcher.fill_next_token_bitmask(bitmask)
            assert matcher.accept_token(token), ("xgrammar rejected", answer)
        report["xgrammar"]["step_us"].append((time.perf_counter() - start) / len(ids) * 1e6)
        t0 = time.perf_counter()
        matcher.rollback(min(16, len(ids)))
        report["xgrammar"]["rollback_us"].append((time.perf_counter() - t0) * 1e6)
        t0 = time.perf_counter()
        matcher.fork()
        report["xgrammar"]["copy_us"].append((time.perf_counter() - t0) * 1e6)

        # ---- llguidance
        t0 = time.perf_counter()
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            row["schema"], defaults={"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
        )
        ll = llguidance.LLMatcher(ll_tok, grammar)
        assert not ll.is_error(), ll.get_error()
        report["llguidance"]["compile_ms"].append((time.perf_counter() - t0) * 1e3)
        mask = llguidance.torch.allocate_token_bitmask(1, vocab)
        start = time.perf_counter()
        for token in ids:
            llguidance.torch.fill_next_token_bitmask(ll, mask, 0)
            assert ll.consume_token(token), ("llguidance rejected", answer, ll.get_error())
        report["llguidance"]["step_us"].append((time.perf_counter() - start) / len(ids) * 1e6)
        t0 = time.perf_counter()
        ll.rollback(min(16, len(ids)))
        report["llguidance"]["rollback_us"].append((time.perf_counter() - t0) * 1e6)
        t0 = time.perf_counter()
        ll.deep_copy()
        report["llguidance"]["copy_us"].append((time.perf_counter() - t0) * 1e6)

    print(f"{len(schemas)} schemas, vocabulary {vocab}, torch threads {torch.get_num_threads()}")
    print("| engine | tokenizer setup s | compile ms (median) | mask+accept us/token | rollback 16 us | copy us |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in report.items():
        print(
            f"| {name} | {r['setup_s']:.2f} | {statistics.median(r['compile_ms']):.1f} | "
            f"{statistics.median(r['step_us']):.0f} | {statistics.median(r['rollback_us']):.0f} | "
            f"{statistics.median(r['copy_us']):.0f} |"
        )


if __name__ == "__main__":
    main()
