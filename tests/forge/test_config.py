import json

import pytest

from forge.config import ConfigError, load_config


def write(tmp_path, data):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def test_repo_config_is_valid():
    cfg = load_config(environ={})
    assert cfg.dataset.seed == 42
    assert "reflection" in cfg.extract.obsidian.include_tags


def test_unknown_key_is_named_with_the_file(tmp_path):
    p = write(tmp_path, {"dataset": {"sed": 1}})
    with pytest.raises(ConfigError) as e:
        load_config(p, environ={})
    assert "dataset.sed" in str(e.value) and str(p) in str(e.value)


def test_mistyped_value_is_named(tmp_path):
    p = write(tmp_path, {"dedup": {"threshold": "high"}})
    with pytest.raises(ConfigError, match=r"dedup\.threshold"):
        load_config(p, environ={})


def test_bad_json_names_the_line(tmp_path):
    p = write(tmp_path, '{\n  "workspace": "x",\n  oops\n}')
    with pytest.raises(ConfigError, match=r"config\.json:3"):
        load_config(p, environ={})


def test_env_overrides(tmp_path):
    p = write(tmp_path, {})
    cfg = load_config(p, environ={"FORGE_DATASET__SEED": "7", "FORGE_WORKSPACE": "/tmp/elsewhere",
                                  "FORGE_EXTRACT__OBSIDIAN__INCLUDE_TAGS": '["journal"]'})
    assert cfg.dataset.seed == 7
    assert cfg.workspace == "/tmp/elsewhere"
    assert cfg.extract.obsidian.include_tags == ["journal"]


def test_env_override_with_unknown_key_is_refused(tmp_path):
    p = write(tmp_path, {})
    with pytest.raises(ConfigError, match="FORGE_DATASET__SEEED"):
        load_config(p, environ={"FORGE_DATASET__SEEED": "7"})
