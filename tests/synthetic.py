"""A synthetic topical corpus for the service and reliability tests: four topics plus filler."""

from __future__ import annotations

import random
from typing import Any

TOPIC_WORDS = {
    "space": "orbit shuttle launch rocket nasa moon mars satellite payload astronaut",
    "graphics": "render pixel shader texture polygon bitmap image vertex gpu raster",
    "hockey": "goal puck rink goalie playoff skate stick penalty season league",
    "medicine": "patient doctor disease symptom dose clinic vaccine therapy virus nurse",
}
FILLER_WORDS = [
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "was",
    "this",
]


def topical_documents(
    count: int, seed: int, prefix: str | None = None, length: int = 40
) -> list[dict[str, Any]]:
    """`count` documents cycling through the topics, 70% topic words; ids `<prefix|topic>-<n>`."""
    rng = random.Random(seed)
    topics = sorted(TOPIC_WORDS)
    docs = []
    for number in range(count):
        topic = topics[number % len(topics)]
        words = TOPIC_WORDS[topic].split()
        text = " ".join(
            rng.choice(words) if rng.random() < 0.7 else rng.choice(FILLER_WORDS)
            for _ in range(length)
        )
        docs.append(
            {"id": f"{prefix or topic}-{number}", "text": text, "metadata": {"topic": topic}}
        )
    return docs
