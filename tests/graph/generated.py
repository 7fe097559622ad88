"""What the generators of random queries share (tests/graph/test_fast_lists.py and
tests/graph/test_compiled.py): a seeded source of choices and numbered aliases."""

from __future__ import annotations

import random


class RandomQueries:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fragments: list[str] = []
        self.aliases = 0

    def alias(self, name: str) -> str:
        if self.rng.random() < 0.2:
            self.aliases += 1
            return f"a{self.aliases}: {name}"
        return name
