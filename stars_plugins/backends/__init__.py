"""Policy backends, on their own floor below the decoding strategies.

- `protocol.py`: the seam (`PolicyBackend`, `PolicyBatch`, `RoundOutput`) and `sampling.py`: per-row
  sampling settings and the batched sampler every backend's rows draw with;
- `hf/`: the in-process transformers backend (`HFPolicy`, `LockstepBatch`: one KV cache, rollback);
- `remote/`: the serving-engine backend (`RemotePolicy`: vLLM, SGLang, llama.cpp's server over HTTP);
- `loader.py`: `load_policy`, which picks the backend by the policy reference, once per process.
"""

from stars_plugins.backends.hf.policy import HFPolicy
from stars_plugins.backends.loader import clear_policy_cache, load_policy, loaded_policies
from stars_plugins.backends.protocol import BoundaryRule, PolicyBackend, PolicyBatch, RoundOutput
from stars_plugins.backends.remote.batch import RemotePolicy
from stars_plugins.backends.sampling import RowSampling

__all__ = [
    "BoundaryRule",
    "HFPolicy",
    "PolicyBackend",
    "PolicyBatch",
    "RemotePolicy",
    "RoundOutput",
    "RowSampling",
    "clear_policy_cache",
    "load_policy",
    "loaded_policies",
]
