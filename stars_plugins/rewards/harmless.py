"""Built-in reward "harmless": all-MiniLM-L6-v2 embeddings of prompt and response, and a small
head trained with a Bradley-Terry loss on the project's preference data (`python -m reward_training` in the repository).

It rewards refusing or redirecting harmful requests and answering harmless ones helpfully, and it
scores unfinished responses (it was trained on prefixes too), as STARS needs.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stars_plugins.errors import ModelNotFoundError, RewardError
from stars_plugins.quiet import quiet_loading

HEAD_FILE = "harmless_head.safetensors"
META_FILE = "harmless_head.json"


def default_head_path() -> Path:
    return Path(str(resources.files("stars_plugins").joinpath("rewards", "weights", HEAD_FILE)))


#: Scalar features a head may take besides the two embeddings (its metadata lists which, in order).
#: All come from what the embedder computes anyway: the two vectors and the response's tokens.
#:   relevance      cosine of prompt and response embeddings (both are L2-normalised)
#:   unknown_share  share of the response's tokens the embedder's vocabulary does not know ([UNK]: emoji, noise)
#:   subword_share  share of word-piece continuations ("##..."): high for gibberish and broken text
#:   repeat_share   share of tokens that repeat an earlier token of the response: high for loops
FEATURES: tuple[str, ...] = ("relevance", "unknown_share", "subword_share", "repeat_share")
TEXT_STATS: tuple[str, ...] = FEATURES[1:]


class PairMLP(nn.Module):
    """Scores (prompt embedding p, response embedding r) from [p, r, p*r, |p-r|] and `extra` scalar features."""

    def __init__(self, embedding_dim: int, hidden: int = 256, dropout: float = 0.1, extra: int = 0):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.net = nn.Sequential(
            nn.Linear(4 * embedding_dim + extra, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    @staticmethod
    def features(prompt: torch.Tensor, response: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        parts = [prompt, response, prompt * response, (prompt - response).abs()]
        if extra is not None:
            parts.append(extra)
        return torch.cat(parts, dim=-1)

    def forward(self, prompt: torch.Tensor, response: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.features(prompt, response, extra)).squeeze(-1)


class PairHead(nn.Module):
    """The reward head: two experts gated by how harmful the prompt looks.

        score(p, r) = g(p) * harmful(p, r) + (1 - g(p)) * benign(p, r),   g(p) = sigmoid(gate . p)

    The gate is trained on the prompts' kinds (harmful 1, borderline 0.5, benign 0) next to the
    Bradley-Terry loss, so that what counts as a good answer (a refusal or a helpful answer)
    follows from one well-supervised judgement about the prompt, which generalises to new prompts
    far better than an MLP left to find that interaction on its own.

    `features` names the scalar inputs (of `FEATURES`) both experts get besides the embeddings; a
    head trained before they existed has none.
    """

    def __init__(self, embedding_dim: int, hidden: int = 256, dropout: float = 0.1, features: Sequence[str] = ()):
        super().__init__()
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise RewardError(f"unknown head features {unknown}; known: {', '.join(FEATURES)}")
        self.embedding_dim = embedding_dim
        self.feature_names = tuple(features)
        self.gate = nn.Sequential(nn.Dropout(dropout), nn.Linear(embedding_dim, 1))
        self.harmful = PairMLP(embedding_dim, hidden, dropout, extra=len(self.feature_names))
        self.benign = PairMLP(embedding_dim, hidden, dropout, extra=len(self.feature_names))

    @property
    def needs_text_stats(self) -> bool:
        return any(f in TEXT_STATS for f in self.feature_names)

    def extra_features(
        self, prompt: torch.Tensor, response: torch.Tensor, stats: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The head's scalar features, in its order; `stats` = the response's `TEXT_STATS` columns."""
        if not self.feature_names:
            return None
        columns = []
        for name in self.feature_names:
            if name == "relevance":
                columns.append((prompt * response).sum(-1))
            else:
                if stats is None:
                    raise RewardError(f"this harmless head needs the responses' text statistics ({name})")
                columns.append(stats[..., TEXT_STATS.index(name)])
        return torch.stack(columns, dim=-1)

    def harmfulness(self, prompt: torch.Tensor) -> torch.Tensor:
        """Logit of the gate: > 0 where the prompt looks harmful."""
        return self.gate(prompt).squeeze(-1)

    def forward(self, prompt: torch.Tensor, response: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        extra = self.extra_features(prompt, response, stats)
        g = torch.sigmoid(self.harmfulness(prompt))
        return g * self.harmful(prompt, response, extra) + (1 - g) * self.benign(prompt, response, extra)


class SentenceEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings (the all-MiniLM-L6-v2 recipe) with transformers."""

    def __init__(
        self,
        folder: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        max_length: int = 256,
        batch_size: int = 64,
    ):
        from transformers import AutoModel, AutoTokenizer

        from stars_plugins.models import embedded_embedder_folder

        self.folder = Path(folder) if folder is not None else embedded_embedder_folder()
        if not (self.folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"sentence embedder folder {str(self.folder)!r} has no config.json", path=str(self.folder)
            )
        with quiet_loading():
            self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.folder, local_files_only=True).to(device).eval()
        self.model.requires_grad_(False)
        self.device = torch.device(device)
        self.max_length = max_length
        self.batch_size = batch_size
        self.dim = int(self.model.config.hidden_size)
        vocab = self.tokenizer.get_vocab()
        self._continuation = torch.zeros(max(vocab.values()) + 1, dtype=torch.bool)
        self._continuation[[i for token, i in vocab.items() if token.startswith("##")]] = True
        self._unk_id = -2 if self.tokenizer.unk_token_id is None else int(self.tokenizer.unk_token_id)
        specials = set(self.tokenizer.all_special_ids) - {self._unk_id}
        self._special_ids = torch.tensor(sorted(specials), dtype=torch.long)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encode_with_stats(texts, stats=False)[0]

    @torch.no_grad()
    def encode_with_stats(
        self, texts: Sequence[str], *, stats: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings and, with `stats`, each text's `TEXT_STATS` (from the same tokens, no extra model pass)."""
        texts = list(texts)
        # More texts than one batch (evaluation, training): batch them by length so that short texts
        # are not padded to a long neighbour; mean pooling over the attention mask ignores padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if len(texts) > self.batch_size else None
        if order is not None:
            texts = [texts[i] for i in order]
        chunks, stat_chunks = [], []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1))
            if stats:
                stat_chunks.append(self._text_stats(batch["input_ids"], batch["attention_mask"]))
        if not chunks:
            empty = torch.zeros((0, self.dim), device=self.device)
            return empty, (torch.zeros((0, len(TEXT_STATS)), device=self.device) if stats else None)
        embeddings, text_stats = torch.cat(chunks), (torch.cat(stat_chunks) if stats else None)
        if order is not None:
            back = torch.empty(len(order), dtype=torch.long)
            back[torch.tensor(order)] = torch.arange(len(order))
            embeddings = embeddings[back.to(embeddings.device)]
            text_stats = None if text_stats is None else text_stats[back.to(text_stats.device)]
        return embeddings, text_stats

    def _text_stats(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        special = self._special_ids.to(ids.device)
        words = attention.bool() & ~torch.isin(ids, special)
        count = words.sum(1).clamp(min=1).to(torch.float32)
        unknown = ((ids == self._unk_id) & words).sum(1) / count
        subword = (self._continuation.to(ids.device)[ids] & words).sum(1) / count
        # a token repeats when an equal id sits before it in the sorted row (padding sorted out of the way)
        marked = torch.where(words, ids, torch.full_like(ids, -1))
        ordered = marked.sort(dim=1).values
        repeats = ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).sum(1) / count
        return torch.stack([unknown, subword, repeats], dim=-1).to(torch.float32)


def load_head(path: str | Path, embedding_dim: int) -> tuple[PairHead, dict[str, Any]]:
    """Load head weights and metadata; a missing or mismatched file raises an error naming it."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(
            f"harmless reward head {str(path)!r} does not exist; train one with `python -m reward_training` "
            "(in a clone of the repository) or reinstall stars-plugins for the shipped one",
            path=str(path),
        )
    meta_path = path.with_suffix(".json")
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise RewardError(f"harmless reward head {str(path)!r} is not a readable safetensors file: {exc}") from exc
    hidden = int(meta.get("hidden", state.get("harmful.net.0.weight", torch.zeros(256, 1)).shape[0]))
    features = meta.get("features", [])
    if not isinstance(features, list) or any(f not in FEATURES for f in features):
        raise RewardError(
            f"harmless reward head metadata {str(meta_path)!r} lists features {features!r}; "
            f"known: {', '.join(FEATURES)}"
        )
    head = PairHead(embedding_dim, hidden=hidden, features=features)
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise RewardError(
            f"harmless reward head {str(path)!r} does not fit a {embedding_dim}-dimensional embedder: "
            f"expected tensors {expected}, found {found}"
        )
    head.load_state_dict(state)
    return head.eval(), meta


class HarmlessReward:
    """The built-in "harmless" reward. Prompt embeddings are cached: a request's prompt is scored
    every round, its response changes."""

    name = "harmless"

    def __init__(
        self,
        head_path: str | Path | None = None,
        *,
        embedder: SentenceEmbedder | None = None,
        device: str | torch.device = "cpu",
        prompt_cache_size: int = 4096,
    ):
        self.embedder = embedder or SentenceEmbedder(device=device)
        self.head_path = Path(head_path) if head_path is not None else default_head_path()
        self.head, self.meta = load_head(self.head_path, self.embedder.dim)
        self.head.to(self.embedder.device)
        self.default_target: float | None = self.meta.get("default_target")
        self._prompt_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = prompt_cache_size
        self._lock = threading.Lock()

    def _prompt_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        with self._lock:
            missing = list(dict.fromkeys(p for p in prompts if p not in self._prompt_cache))
        if missing:
            encoded = self.embedder.encode(missing)
            with self._lock:
                for text, vector in zip(missing, encoded, strict=True):
                    self._prompt_cache[text] = vector
                while len(self._prompt_cache) > self._cache_size:
                    self._prompt_cache.popitem(last=False)
        with self._lock:
            return torch.stack([self._prompt_cache[p] for p in prompts])

    @torch.no_grad()
    def harmfulness(self, prompts: Sequence[str]) -> list[float]:
        """The gate's probability that each prompt is a harmful request (0 to 1)."""
        return torch.sigmoid(self.head.harmfulness(self._prompt_embeddings(prompts))).float().cpu().tolist()

    @torch.no_grad()
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if not responses:
            return []
        prompt_vectors = self._prompt_embeddings(prompts)
        response_vectors, stats = self.embedder.encode_with_stats(responses, stats=self.head.needs_text_stats)
        return self.head(prompt_vectors, response_vectors, stats).float().cpu().tolist()

    def __repr__(self) -> str:
        return f"HarmlessReward(head={str(self.head_path)!r})"
