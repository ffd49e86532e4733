"""Built-in reward "sentiment": VADER's compound polarity of the response, in [-1, 1].

A lexicon, no weights: it steers towards friendly, positive answers and costs microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence


class SentimentReward:
    name = "sentiment"
    #: VADER calls text "positive" above 0.05; 0.5 asks for clearly positive answers.
    default_target = 0.5

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [self._analyzer.polarity_scores(text)["compound"] if text.strip() else 0.0 for text in responses]

    def __repr__(self) -> str:
        return "SentimentReward()"
