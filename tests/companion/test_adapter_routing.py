"""Which adapters fit which base, what a swap keeps, and the 404 for an adapter that is not served: the pool's
rules on their own (the real server with llama.cpp is tests/companion/test_adapters.py)."""

import asyncio

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


def test_a_request_for_an_adapter_not_served_or_being_removed_is_a_404_and_admitted_ones_are_counted():
    pool = ModelPool(WorkerOptions())
    pool.adapters = {"tuned": adapter("tuned", "base", "a" * 64)}
    with pytest.raises(CompanionError) as e:
        with pool.adapter_use("ghost"):
            pass
    assert e.value.status == 404 and e.value.type == "model_not_found" and "not loaded" in e.value.message
    with pool.adapter_use("tuned"):
        assert pool.adapter_users["tuned"] == 1
        pool.removing.add("tuned")
        with pytest.raises(CompanionError, match="being removed"):
            with pool.adapter_use("tuned"):
                pass
    assert pool.adapter_users["tuned"] == 0
    with pool.adapter_use(None):  # the base: nothing counted
        pass


def test_removing_an_adapter_that_is_not_loaded_is_a_404():
    pool = ModelPool(WorkerOptions())
    with pytest.raises(CompanionError) as e:
        asyncio.run(pool.remove_adapter("ghost"))
    assert e.value.status == 404


def test_the_registry_lists_each_base_with_its_adapters_right_after_it():
    models = [adapter("b-lora", "alt", ""), {"id": "alt", "meta": {}}, adapter("a-lora", "base", ""),
              {"id": "base", "meta": {}}, adapter("orphan", "gone", "")]
    assert [m["id"] for m in models_with_adapters(models)] == ["alt", "b-lora", "base", "a-lora", "orphan"]
