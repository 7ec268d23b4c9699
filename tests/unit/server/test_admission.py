from __future__ import annotations

import asyncio

import pytest

from server.admission import Admission, Overloaded


def test_excess_requests_are_shed_and_the_rest_succeed() -> None:
    async def scenario() -> tuple[int, int]:
        adm = Admission(max_inflight=2, max_queued=3)
        release = asyncio.Event()

        async def request() -> str:
            try:
                async with adm.slot():
                    await release.wait()
                    return "ok"
            except Overloaded:
                return "shed"

        tasks = [asyncio.create_task(request()) for _ in range(10)]
        await asyncio.sleep(0.05)
        assert adm.running == 2 and adm.waiting == 3
        release.set()
        results = await asyncio.gather(*tasks)
        return results.count("ok"), results.count("shed")

    assert asyncio.run(scenario()) == (5, 5)


def test_slots_are_released_on_error() -> None:
    async def scenario() -> int:
        adm = Admission(max_inflight=1, max_queued=0)
        with pytest.raises(RuntimeError):
            async with adm.slot():
                raise RuntimeError("boom")
        async with adm.slot():
            return adm.running

    assert asyncio.run(scenario()) == 1
