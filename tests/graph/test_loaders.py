"""The DataLoader used for every relationship: batching and errors of `load_many`."""

from __future__ import annotations

import gc
from collections.abc import Sequence

import pytest

from graph.loaders import Loader


async def test_load_many_batches_and_keeps_order() -> None:
    batches: list[list[int]] = []

    async def load(keys: Sequence[int]) -> list[int]:
        batches.append(list(keys))
        return [k * 10 for k in keys]

    loader = Loader(load_fn=load)
    assert await loader.load_many([3, 1, 2, 1]) == [30, 10, 20, 10]
    assert batches == [[3, 1, 2]]


async def test_a_failed_batch_fails_load_many_without_unretrieved_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def load(keys: Sequence[int]) -> list[int]:
        raise RuntimeError("database gone")

    loader = Loader(load_fn=load)
    with pytest.raises(RuntimeError, match="database gone"):
        await loader.load_many([1, 2, 3])
    # asyncio logs futures whose errors nobody retrieved when they are collected.
    loader.cache_map.clear()
    gc.collect()
    assert "never retrieved" not in caplog.text
