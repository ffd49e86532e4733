"""Causal-LM backends (transformers first), shared process-wide."""

from stars_plugins.policy.hf import HFPolicy
from stars_plugins.policy.loader import clear_policy_cache, load_policy, loaded_policies
from stars_plugins.policy.prompts import PreparedPrompt, PromptInput

__all__ = ["HFPolicy", "PreparedPrompt", "PromptInput", "clear_policy_cache", "load_policy", "loaded_policies"]
