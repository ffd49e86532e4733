"""Reward backends behind one batched protocol: `score(prompts, responses) -> scores`."""

from stars_plugins.rewards.base import CallableReward, RewardModel, score_checked
from stars_plugins.rewards.classifier import ClassifierReward
from stars_plugins.rewards.harmless import HarmlessReward
from stars_plugins.rewards.registry import (
    available_rewards,
    clear_reward_cache,
    load_classifier_reward,
    load_reward,
    register_reward,
)
from stars_plugins.rewards.sentiment import SentimentReward

register_reward(
    "sentiment",
    SentimentReward,
    description="VADER compound polarity of the response in [-1, 1]: friendly, positive answers",
)

register_reward(
    "harmless",
    HarmlessReward,
    description="all-MiniLM-L6-v2 + Bradley-Terry head: refuse harmful requests, answer harmless ones helpfully",
)

__all__ = [
    "CallableReward",
    "ClassifierReward",
    "HarmlessReward",
    "RewardModel",
    "SentimentReward",
    "available_rewards",
    "clear_reward_cache",
    "load_classifier_reward",
    "load_reward",
    "register_reward",
    "score_checked",
]
