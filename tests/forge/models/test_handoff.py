"""Hand-off formats: the merged `hf` folder loads in transformers (what vLLM/SGLang/TGI read) and the `peft` folder
loads in PEFT (what vLLM's multi-LoRA reads) on the base it names, and both generate greedily exactly what forge's
own model (base + the run's adapter) generates. The README and the CLI carry the serving commands."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from forge.models.export import ExportError
from forge.models.handoff import export_handoff

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]
PROMPTS = ["remind me to call mom tomorrow at 5", "dont let me forget the dentist on friday"]


def greedy(model, tokenizer, prompt: str) -> list[int]:
    import torch

    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    return out[0, ids["input_ids"].shape[1]:].tolist()


@pytest.fixture(scope="module")
def reference(trained_workspace):
    """forge's own: the base with the run's adapter, as training left it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    store, config, run_id, run_dir = trained_workspace
    info = json.loads((run_dir / "adapter" / "forge_adapter.json").read_text())
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(info["base_path"], dtype=torch.float32),
                                      str(run_dir / "adapter")).eval()
    tok = AutoTokenizer.from_pretrained(run_dir / "adapter")
    return {p: greedy(model, tok, p) for p in PROMPTS}


def test_hf_folder_loads_in_transformers_and_generates_what_forge_does(trained_workspace, reference, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    store, config, run_id, _ = trained_workspace
    r = export_handoff(store, config, run_id, "hf", tmp_path / "hf")
    path = Path(r["path"])
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    assert "<|im_start|>" in (path / "chat_template.jinja").read_text()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert {p: greedy(model, tok, p) for p in PROMPTS} == reference
    readme = (path / "README.md").read_text()
    assert f"vllm serve {path}" in readme and "sglang.launch_server" in readme and "llama-server" in readme


def test_peft_folder_loads_on_the_base_it_names_and_generates_what_forge_does(trained_workspace, reference, tmp_path):
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    store, config, run_id, _ = trained_workspace
    r = export_handoff(store, config, run_id, "peft", tmp_path / "peft")
    path = Path(r["path"])
    cfg = PeftConfig.from_pretrained(path)
    assert Path(cfg.base_model_name_or_path).is_dir()  # a base that exists here, as vLLM needs it
    base = AutoModelForCausalLM.from_pretrained(cfg.base_model_name_or_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(path)).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert {p: greedy(model, tok, p) for p in PROMPTS} == reference
    assert f"--enable-lora --lora-modules forge-{run_id}={path}" in r["commands"]["vllm"]
    assert "ADAPTER ." in (path / "Modelfile").read_text()
    assert not (path / "forge_adapter.json").exists()


def test_cli_prints_the_commands_and_refuses_a_foreign_folder(trained_workspace, tmp_path):
    store, config, run_id, _ = trained_workspace
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not written by forge export"):
        export_handoff(store, config, run_id, "peft", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    p = subprocess.run([sys.executable, "-m", "tui.launch", "-w", str(config.workspace_path()), "export", run_id,
                        "--format", "peft", "--out", str(tmp_path / "cli")], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "serve it with:" in p.stderr and "vllm serve" in p.stderr and "--enable-lora" in p.stderr


def test_the_comparison_can_tell_a_lost_adapter(trained_workspace, reference):
    """The parity above means something only if the adapter changes the greedy output: the bare base must differ."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, _, run_dir = trained_workspace
    info = json.loads((run_dir / "adapter" / "forge_adapter.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(info["base_path"], dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(run_dir / "adapter")
    assert {p: greedy(base, tok, p) for p in PROMPTS} != reference
