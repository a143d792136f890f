"""One user-error type: what a user can cause is one line and exit 1 (the traceback only with --debug); a bug keeps
its traceback; one pydantic formatter names the file, the line and the key."""

import json
import os
import subprocess
import sys
import traceback

import pytest
from click.testing import CliRunner

from forge.errors import ForgeError, format_validation_error
from tests.conftest import REPO


def forge(*args, cwd=REPO):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    return subprocess.run([sys.executable, "-m", "forge.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


def test_a_user_error_is_one_line_and_exit_1_and_debug_adds_the_traceback(tmp_path):
    ws = str(tmp_path / "ws")
    p = forge("--workspace", ws, "approve", "999")
    assert p.returncode == 1
    assert p.stderr.strip() == "forge: error: no example with id 999"

    p = forge("--debug", "--workspace", ws, "approve", "999")
    assert p.returncode == 1
    assert "Traceback (most recent call last)" in p.stderr and "StoreError" in p.stderr
    assert p.stderr.strip().splitlines()[-1] == "forge: error: no example with id 999"


def test_a_bad_config_caught_outside_a_command_body_is_still_one_line(tmp_path):
    """The store is opened while `extract obsidian --forget-filter` builds its arguments, outside run_guarded."""
    bad = tmp_path / "config.json"
    bad.write_text('{\n  "workspace": "%s",\n  "dedup": {\n    "threshold": "high"\n  }\n}\n' % (tmp_path / "ws"))
    vault = tmp_path / "vault"
    vault.mkdir()
    p = forge("--config", str(bad), "extract", "obsidian", str(vault), "--forget-filter", "--json")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    error = json.loads(p.stdout)["error"]
    assert error.startswith(f"{bad}:4: key 'dedup.threshold'") and '"high"' in error
    assert p.stderr.strip() == f"forge: error: {error}"


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    """A KeyError from inside forge is a bug: no friendly one-liner that hides where it came from."""
    from forge.cli import main
    from forge.store import Store

    def broken_counts(self):
        return {}["pending"]

    monkeypatch.setattr(Store, "counts", broken_counts)
    result = CliRunner().invoke(main, ["--workspace", str(tmp_path / "ws"), "stats"])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)
    assert "forge: error" not in result.output
    shown = "".join(traceback.format_exception(*result.exc_info))
    assert "broken_counts" in shown and "KeyError: 'pending'" in shown


def test_the_formatter_names_the_file_line_and_key_of_a_bad_config(tmp_path):
    from forge.config import ConfigError, load_config

    path = tmp_path / "config.json"
    path.write_text('{\n  "dataset": {\n    "seed": 7,\n    "sed": 1\n  }\n}\n')
    with pytest.raises(ConfigError) as e:
        load_config(path, environ={})
    assert isinstance(e.value, ForgeError)
    assert str(e.value).startswith(f"{path}:4: unknown key 'dataset.sed'")

    path.write_text('{"dedup": {"threshold": "high"}}')
    with pytest.raises(ConfigError) as e:
        load_config(path, environ={})
    assert str(e.value).startswith(f"{path}:1: key 'dedup.threshold': Input should be a valid number")


def test_the_formatter_names_the_file_and_key_of_a_bad_spec(tmp_path):
    from forge.train.spec import SpecError, TrainSpec

    path = tmp_path / "spec.json"
    path.write_text('{\n  "max_steps": 5,\n  "lora_r": -1\n}\n')
    with pytest.raises(SpecError) as e:
        TrainSpec.load(path)
    assert isinstance(e.value, ForgeError)
    assert str(e.value) == f"{path}:3: key 'lora_r': Input should be greater than 0 (got -1)"

    # The same spec given to `forge train --spec`: one line naming the file, the line and the key.
    p = forge("--workspace", str(tmp_path / "ws"), "train", "--spec", str(path), "--json")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert json.loads(p.stdout)["error"].startswith(f"{path}:3: key 'lora_r'")


def test_the_formatter_without_a_file():
    from pydantic import ValidationError

    from forge.train.spec import TrainSpec

    with pytest.raises(ValidationError) as e:
        TrainSpec.model_validate({"lora_r": 8, "learning_rat": 1})
    assert format_validation_error(e.value) == "unknown key 'learning_rat' (check the spelling)"


def test_every_user_error_type_is_a_forge_error():
    from forge.config import ConfigError
    from forge.data.curate import InvalidExample
    from forge.data.dataset import DatasetError
    from forge.data.dedup import DedupError
    from forge.data.extract.common import ExtractError
    from forge.data.tokens import TokenizerUnavailable
    from forge.demo import DemoError
    from forge.errors import DiskSpaceError
    from forge.eval import EvalError
    from forge.llm.backtranslate import BacktranslateError
    from forge.llm.generate import GenerateError
    from forge.models.base_model import BaseModelError
    from forge.models.export import ExportError
    from forge.store import StoreError
    from forge.train.runner import RunFailed
    from forge.train.spec import SpecError

    for cls in (BacktranslateError, ConfigError, InvalidExample, DatasetError, DedupError, DemoError, EvalError,
                ExportError, ExtractError, GenerateError, StoreError, TokenizerUnavailable, BaseModelError,
                RunFailed, SpecError, DiskSpaceError):
        assert issubclass(cls, ForgeError), cls


def test_too_little_disk_is_one_line_naming_the_folder_before_anything_is_written(tmp_path):
    """Read off this machine's real file system: asking for more than the whole disk holds fails, with the folder
    (a parent that exists stands in for one not made yet) and both amounts; asking for a byte passes."""
    import shutil

    from forge.errors import DiskSpaceError, need_free_space

    target = tmp_path / "ws" / "models" / "bases"
    too_much = shutil.disk_usage(tmp_path).total * 2
    with pytest.raises(DiskSpaceError) as e:
        need_free_space(target, too_much, "materialising gemma-3-270m-q4_k_m.gguf")
    msg = str(e.value)
    assert "\n" not in msg and str(target) in msg and "materialising gemma-3-270m-q4_k_m.gguf" in msg
    assert f"{too_much / 1e9:.1f} GB" in msg and not target.exists()
    need_free_space(target, 1, "a byte")
