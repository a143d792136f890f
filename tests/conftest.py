from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
SAMPLE_VAULT = REPO / "data" / "sample_vault"


@pytest.fixture
def config(tmp_path):
    from forge.config import Config

    return Config(workspace=str(tmp_path / "ws"))


@pytest.fixture
def store(config):
    from forge.store import Store

    s = Store.for_workspace(config.workspace_path())
    yield s
    s.close()


@pytest.fixture
def sample_store(store, config):
    from forge.extract import run_extract

    run_extract(store, "obsidian", SAMPLE_VAULT, config)
    return store


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory):
    """The bundled SmolLM2-135M materialised once per test session (~35 s), shared by every real-model test."""
    from forge.train.base_model import materialise

    return materialise(tmp_path_factory.mktemp("base") / "base-hf")
