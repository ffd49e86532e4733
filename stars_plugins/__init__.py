"""stars-plugins: STARS reward-guided decoding in fixed-size lockstep segments.

from stars_plugins import StarsRuntime, StarsConfig
rt = StarsRuntime.from_pretrained()          # embedded policy and reward, no network
results = rt.generate(["How do I ...?"], StarsConfig(horizon=16, num_candidates=4))
"""

from stars_plugins.backends import HFPolicy, load_policy
from stars_plugins.config import StarsConfig
from stars_plugins.constraints import Constraint
from stars_plugins.decoding import available_strategies, register_strategy
from stars_plugins.errors import (
    ConfigError,
    ConstraintError,
    ModelNotFoundError,
    PromptError,
    PromptTooLongError,
    RewardError,
    StarsError,
    UnknownRewardError,
    UnknownStrategyError,
)
from stars_plugins.results import GenerationResult, GenerationStats, Segment
from stars_plugins.rewards import (
    CallableReward,
    ClassifierReward,
    RewardModel,
    available_rewards,
    load_reward,
    register_reward,
)
from stars_plugins.runtime import AsyncGenerationStream, GenerationStream, StarsRuntime

__version__ = "0.1.0"

__all__ = [
    "AsyncGenerationStream",
    "CallableReward",
    "ClassifierReward",
    "ConfigError",
    "Constraint",
    "ConstraintError",
    "GenerationResult",
    "GenerationStats",
    "GenerationStream",
    "HFPolicy",
    "ModelNotFoundError",
    "PromptError",
    "PromptTooLongError",
    "RewardError",
    "RewardModel",
    "Segment",
    "StarsConfig",
    "StarsError",
    "StarsRuntime",
    "UnknownRewardError",
    "UnknownStrategyError",
    "__version__",
    "available_rewards",
    "available_strategies",
    "load_policy",
    "load_reward",
    "register_reward",
    "register_strategy",
]
