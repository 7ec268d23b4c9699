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


def test_a_newcomer_is_shed_when_its_expected_wait_exceeds_the_budget() -> None:
    """Time is a stepped fake clock: each request holds its slot 10 steps (0.1 s); with 1 slot and a
    0.25 s budget, two may wait (expected 0.1 and 0.2 s), the third (0.3 s) is shed at once."""
    now = [0.0]

    async def scenario() -> list[str]:
        adm = Admission(max_inflight=1, max_queued=100, max_wait_s=0.25, clock=lambda: now[0])
        async with adm.slot():  # one finished request teaches the service time
            now[0] += 0.1
        assert adm.service_s == pytest.approx(0.1)
        release = asyncio.Event()

        async def request() -> str:
            try:
                async with adm.slot():
                    await release.wait()
                    now[0] += 0.1
                    return "ok"
            except Overloaded as exc:
                assert "expected wait 300 ms exceeds 250 ms" in str(exc)
                return "shed"

        tasks = []
        for _ in range(4):  # one runs, two queue, the fourth would wait 0.3 s
            tasks.append(asyncio.create_task(request()))
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        release.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(scenario()) == ["ok", "ok", "ok", "shed"]


def test_without_a_budget_or_history_only_the_queue_length_sheds() -> None:
    adm = Admission(max_inflight=1, max_queued=5)
    assert adm.expected_wait_s() == 0.0 and adm.max_wait_s is None
