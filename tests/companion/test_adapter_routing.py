"""Which adapters fit which base, what a swap keeps, and the 404 for an adapter being removed: the pool's
rules on their own (the real server with llama.cpp is tests/companion/test_adapters.py)."""

import asyncio
import time

import pytest

from companion.pool import CompanionError, ModelPool, WorkerOptions
from forge.models.export import models_with_adapters

BASE = {"id": "base", "sha256": "a" * 64, "meta": {}}
COPY = {"id": "base-copy", "sha256": "a" * 64, "meta": {}}
OTHER = {"id": "alt", "sha256": "b" * 64, "meta": {}}


def adapter(adapter_id: str, base_id: str, base_sha: str) -> dict:
    return {"id": adapter_id, "path": f"/m/{adapter_id}.gguf",
            "meta": {"kind": "adapter", "base_id": base_id, "provenance": {"forge.base_sha256": base_sha}}}


def test_an_adapter_fits_its_base_by_id_or_by_the_same_file_and_a_swap_keeps_only_those():
    pool = ModelPool(WorkerOptions())
    pool.adapters = {"tuned": adapter("tuned", "base", "a" * 64), "other": adapter("other", "alt", "b" * 64)}
    assert pool.adapter_fits(pool.adapters["tuned"], BASE) is None
    assert pool.adapter_fits(pool.adapters["tuned"], COPY) is None  # same sha256: the same weights
    keep, refused = pool.adapters_for(OTHER)
    assert list(keep) == ["other"] and "made for base 'base', not for 'alt'" in refused["tuned"]


class StandInWorker:
    """Stands in for a llama.cpp worker: its lock (one request at a time) and liveness are all the admission looks
    at."""

    def __init__(self, slot):
        self.slot, self.lock, self.gone, self.retired, self.alive = slot, asyncio.Lock(), asyncio.Event(), False, True


def test_requests_for_an_adapter_count_until_they_hold_the_model_and_one_being_removed_is_a_404():
    async def scenario():
        pool = ModelPool(WorkerOptions())
        slot = pool.primary
        slot.model, slot.adapters = BASE, {"tuned": adapter("tuned", "base", "a" * 64)}
        worker = StandInWorker(slot)
        slot.current = worker
        slot.ready.set()
        await worker.lock.acquire()  # a request is running
        deadline = time.monotonic() + 10
        queued = asyncio.create_task(pool._acquire(None, slot.adapters["tuned"], None, deadline))
        await asyncio.sleep(0.05)
        assert slot.adapter_users["tuned"] == 1 and not slot.idle()  # a DELETE waits for it; no eviction
        slot.removing.add("tuned")
        with pytest.raises(CompanionError) as e:
            await pool._acquire(None, slot.adapters["tuned"], None, deadline)
        assert e.value.status == 404 and e.value.type == "model_not_found" and "being removed" in e.value.message
        worker.lock.release()
        assert await queued is worker  # the one admitted before the removal still runs
        assert slot.adapter_users["tuned"] == 0
        worker.lock.release()
        assert await pool._acquire(None, None, None, deadline) is worker  # the base: nothing counted
        assert not any(slot.adapter_users.values())

    asyncio.run(scenario())


def test_removing_an_adapter_that_is_not_loaded_is_a_404():
    pool = ModelPool(WorkerOptions())
    with pytest.raises(CompanionError) as e:
        asyncio.run(pool.remove_adapter("ghost"))
    assert e.value.status == 404


def test_the_registry_lists_each_base_with_its_adapters_right_after_it():
    models = [adapter("b-lora", "alt", ""), {"id": "alt", "meta": {}}, adapter("a-lora", "base", ""),
              {"id": "base", "meta": {}}, adapter("orphan", "gone", "")]
    assert [m["id"] for m in models_with_adapters(models)] == ["alt", "b-lora", "base", "a-lora", "orphan"]
