"""The policy on a serving engine (vLLM, SGLang, llama.cpp's server) over HTTP, exact tokens.

`load_remote_policy(url, tokenizer=...)` returns a `RemotePolicy`, a `PolicyBackend` like the
in-process `HFPolicy`; `StarsRuntime.from_pretrained(policy="http://...")` calls it.
"""

from stars_plugins.engines.detect import ENGINE_NAMES, Replica, connect, is_remote, server_root
from stars_plugins.engines.load import load_remote_policy
from stars_plugins.engines.protocol import SegmentRequest, SegmentResult, ServerInfo
from stars_plugins.engines.remote import RemoteBatch, RemotePolicy, segment_seed
from stars_plugins.engines.reward import RemoteReward
from stars_plugins.engines.transport import API_KEY_ENV, HttpTransport

__all__ = [
    "API_KEY_ENV",
    "ENGINE_NAMES",
    "HttpTransport",
    "RemoteBatch",
    "RemotePolicy",
    "RemoteReward",
    "Replica",
    "SegmentRequest",
    "SegmentResult",
    "ServerInfo",
    "connect",
    "is_remote",
    "load_remote_policy",
    "segment_seed",
    "server_root",
]
