"""The in-process transformers backend: `HFPolicy` owns a loaded causal LM, its batches are
`LockstepBatch`es over one KV cache."""

from stars_plugins.backends.hf.batch import LockstepBatch
from stars_plugins.backends.hf.policy import HFPolicy

__all__ = ["HFPolicy", "LockstepBatch"]
