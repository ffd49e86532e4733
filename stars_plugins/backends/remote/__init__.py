"""The policy on a serving engine (vLLM, SGLang, llama.cpp's server) over HTTP, exact tokens.

`load_remote_policy(url, tokenizer=...)` returns a `RemotePolicy`, a `PolicyBackend` like the
in-process `HFPolicy`; `StarsRuntime.from_pretrained(policy="http://...")` calls it.
"""

from stars_plugins.backends.remote.batch import RemoteBatch, RemotePolicy, segment_seed
from stars_plugins.backends.remote.detect import ENGINE_NAMES, Replica, connect, server_root
from stars_plugins.backends.remote.load import load_remote_policy
from stars_plugins.backends.remote.protocol import SegmentRequest, SegmentResult, ServerInfo
from stars_plugins.backends.remote.transport import API_KEY_ENV, HttpTransport

__all__ = [
    "API_KEY_ENV",
    "ENGINE_NAMES",
    "HttpTransport",
    "RemoteBatch",
    "RemotePolicy",
    "Replica",
    "SegmentRequest",
    "SegmentResult",
    "ServerInfo",
    "connect",
    "load_remote_policy",
    "segment_seed",
    "server_root",
]
