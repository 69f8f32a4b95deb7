"""The call path (:mod:`spider_core.pool.call`): every entry point takes it, and pipelined
``execute`` keeps every guarantee of a single call (real executor, real C package)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

import spider_core as sc
import spider_core.pool.call
from spider_core.plugin import hookimpl

PKG = "integration_test_tasks"
CALL_MODULE = spider_core.pool.call.__file__


def req(task: str, *inputs: object) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=PKG, task=task, inputs=inputs)


def echo(token: str, ms: int = 0) -> sc.ExecuteRequest:
    return req("sleep_and_echo", [token], ms) if ms else req("sleep_and_echo", [token])


@pytest.fixture
def config(package_dir: Path, tmp_path: Path) -> sc.PoolConfig:
    return sc.PoolConfig(
        package_dir=package_dir, log_dir=tmp_path / "logs", slots=2, plugin_autoload=False,
        default_timeout=10, executor_log_level="debug",
    )


def runs(log_dir: Path) -> Counter[str]:
    """How many times each ``sleep_and_echo`` token ran, from the executors' debug logs."""
    counted: Counter[str] = Counter()
    for log in log_dir.glob("*.log"):
        for line in log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "task start" and event.get("task") == "sleep_and_echo":
                counted[event["token"]] += 1
    return counted


class Finished:
    """Records each ``spider_task_finished`` event, and whether it came from the call module."""

    def __init__(self) -> None:
        #: (request, outcome, from the call module, times and executor as they should be)
        self.seen: list[tuple[sc.ExecuteRequest, sc.Outcome, bool, bool]] = []

    @hookimpl
    def spider_task_finished(self, request, outcome, executor_id, queue_wait, execution_time):
        frame = sys._getframe(1)
        from_call_path = False
        while frame is not None:
            from_call_path = from_call_path or frame.f_code.co_filename == CALL_MODULE
            frame = frame.f_back
        sound = queue_wait >= 0 and execution_time >= 0 and executor_id == outcome.executor_id
        self.seen.append((request, outcome, from_call_path, sound))  # (a hook's assert would be logged, not raised)


# -- one path for every entry point ----------------------------------------------------------


MIX = {  # token -> the request and the outcome it must get
    "ok": (req("fibonacci", 10), sc.Success),
    "fails": (req("always_fail"), sc.InTaskFailure),
    "times-out": (req("sleep_ms", 3000), sc.Timeout),
    "crashes": (req("segfault"), sc.ExecutorCrash),
}


def test_every_entry_point_takes_the_call_path_once_per_request(config) -> None:
    """ProcessPool.execute and map, SyncProcessPool.execute, submit and map: each request's
    ``spider_task_finished`` comes once, from the call module, with the very outcome the
    caller got. An entry point with a send-and-settle of its own breaks this."""
    recorder = Finished()
    requests = [request for request, _ in MIX.values()]
    got: dict[str, list[sc.Outcome]] = {}

    def manager() -> sc.SpiderPluginManager:
        pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
        pm.register(recorder)
        return pm

    async def asynchronous() -> None:
        async with sc.ProcessPool(config, plugin_manager=manager()) as pool:
            got["execute"] = [await pool.execute(r, 0.5) for r in requests]
            got["map"] = [o async for o in pool.map(requests, 0.5)]

    asyncio.run(asynchronous())
    with sc.SyncProcessPool(config, plugin_manager=manager()) as pool:
        got["sync execute"] = [pool.execute(r, 0.5) for r in requests]
        got["submit"] = [pool.submit(r, 0.5).result(timeout=30) for r in requests]
        got["sync map"] = list(pool.map(requests, 0.5))

    for entry, outcomes in got.items():
        assert [type(o) for o in outcomes] == [kind for _, kind in MIX.values()], entry
    returned = [o for outcomes in got.values() for o in outcomes]
    assert len(recorder.seen) == len(returned) == 5 * len(MIX)
    assert sorted(map(id, returned)) == sorted(id(o) for _, o, _, _ in recorder.seen)  # once each, the same object
    assert all(from_call_path and sound for _, _, from_call_path, sound in recorder.seen)
