"""Decoding defaults that belong to a model: a run's spec → its GGUF key and Modelfile → what the companion and
Eval sample with (the same function for both)."""

from __future__ import annotations

import json

import pytest

from forge.models.export import decoding_keys, modelfile, run_decoding
from forge.models.llama_child import DECODING_KEY, GREEDY, decoding_defaults, sampling
from forge.train.spec import TrainSpec


def test_a_request_overrides_the_model_defaults_field_by_field():
    defaults = decoding_defaults({DECODING_KEY: json.dumps({"temperature": 0.8, "repeat_penalty": 1.2, "seed": 5})})
    assert sampling(defaults) == {"temperature": 0.8, "repeat_penalty": 1.2, "seed": 5}
    assert sampling(defaults, {"temperature": 0, "seed": None, "max_tokens": 9}) == {
        "temperature": 0, "repeat_penalty": 1.2, "seed": 5}  # None leaves the default; max_tokens is not sampling
    assert sampling(defaults, {"seed": -1})["seed"] == 2 ** 32 - 1  # any integer a client sends maps onto 32 bits
    assert sampling(GREEDY) == {"temperature": 0.0, "seed": 0}


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", json.dumps({"temperature": "hot"}), json.dumps(None)])
def test_defaults_that_do_not_read_are_ignored_never_fatal(raw):
    assert decoding_defaults({DECODING_KEY: raw}) == {}
    assert decoding_defaults({}) == {}


def test_unknown_fields_in_the_gguf_key_are_left_out():
    assert decoding_defaults({DECODING_KEY: json.dumps({"top_k": "40", "mirostat": 2})}) == {"top_k": 40}


def test_a_run_spec_with_decoding_gives_the_gguf_key_and_the_modelfile_parameters(tmp_path):
    spec = TrainSpec.model_validate({"decoding": {"temperature": 0.7, "repeat_penalty": 1.15, "seed": 0,
                                                  "presence_penalty": 0.5}})
    spec.save(tmp_path / "spec.json")
    assert run_decoding(tmp_path) == {"temperature": 0.7, "repeat_penalty": 1.15, "seed": 0, "presence_penalty": 0.5}
    key = decoding_keys(tmp_path)
    assert decoding_defaults(key) == run_decoding(tmp_path)  # what export writes is what the companion reads
    text = modelfile("m.gguf", "<|im_end|>", "<|im_start|>", run_decoding(tmp_path))
    assert "PARAMETER temperature 0.7\n" in text and "PARAMETER repeat_penalty 1.15\n" in text
    assert "PARAMETER seed 0\n" in text and "presence_penalty" not in text  # not a Modelfile PARAMETER


def test_a_run_without_decoding_is_greedy_everywhere(tmp_path):
    TrainSpec().save(tmp_path / "spec.json")
    assert run_decoding(tmp_path) == {} and decoding_keys(tmp_path) == {}
    assert run_decoding(tmp_path / "missing") == {}
    text = modelfile("m.gguf", None, "{{ messages }}")
    assert "PARAMETER temperature 0.0\n" in text and "PARAMETER seed 0\n" in text
    # Ollama's own defaults differ from llama-cpp-python's (repeat_penalty 1.1): the Modelfile spells out the
    # companion's, so Ollama samples the same way
    assert "PARAMETER repeat_penalty 1.0\n" in text and "PARAMETER top_p 0.95\n" in text


def test_a_bad_decoding_value_is_refused_naming_the_field():
    with pytest.raises(Exception) as e:
        TrainSpec.model_validate({"decoding": {"top_p": 1.5}})
    assert "top_p" in str(e.value)
    with pytest.raises(Exception) as e:
        TrainSpec.model_validate({"decoding": {"temprature": 0.5}})
    assert "temprature" in str(e.value)
