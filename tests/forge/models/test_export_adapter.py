"""`forge export RUN --adapter`: the run's LoRA as a llama.cpp GGUF adapter of its base, written by llama.cpp's own
model classes, registered under its base; base + adapter in llama.cpp generates what the merged export generates."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from forge.models import export as ex
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def adapter_export(trained_workspace):
    store, config, run_id, _ = trained_workspace
    stages = []
    r = ex.export_adapter(store, config, run_id, progress=lambda stage, msg: stages.append(stage))
    return r, stages


def test_adapter_is_a_llama_cpp_lora_gguf_with_provenance_registered_under_its_base(trained_workspace,
                                                                                     adapter_export):
    import gguf

    store, config, run_id, run_dir = trained_workspace
    r, stages = adapter_export
    assert stages == ["base", "convert", "check"]
    lora_cfg = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    reader = gguf.GGUFReader(r["path"])
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    assert field("general.type") == "adapter" and field("adapter.type") == "lora"
    assert field("adapter.lora.alpha") == pytest.approx(lora_cfg["lora_alpha"])
    assert field("general.architecture") == "llama"
    assert field("forge.run_id") == run_id and field("forge.base_model_id") == "base"
    assert field("forge.dataset_hash") == store.get_run(run_id)["meta"]["dataset_hash"]
    assert field("forge.base_sha256") == store.get_model("base")["sha256"]
    # llama.cpp's names for the base's own tensors, with .lora_a / .lora_b; nothing else (no vocab, no norms)
    names = {t.name for t in reader.tensors}
    n_layers = json.loads((Path(json.loads((run_dir / "adapter" / "forge_adapter.json").read_text())["base_path"])
                           / "config.json").read_text())["num_hidden_layers"]
    expected = {f"blk.{i}.attn_{m}.weight.lora_{ab}" for i in range(n_layers) for m in ("q", "v") for ab in "ab"}
    assert names == expected
    a = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight.lora_a")
    assert lora_cfg["r"] in [int(d) for d in a.shape]
    assert "tokenizer.ggml.tokens" not in reader.fields

    model = store.get_model(r["model_id"])
    assert ex.is_adapter(model) and model["meta"]["base_id"] == "base" and model["run_id"] == run_id
    assert model["sha256"] == ex.sha256_file(Path(r["path"]))
    assert model["meta"]["smoke"].strip()  # llama.cpp loaded it on the base and generated
    ordered = [m["id"] for m in ex.models_with_adapters(store.models())]
    assert ordered.index(r["model_id"]) == ordered.index("base") + 1
    assert "--lora" in r["commands"]["llama-server"] and r["path"] in r["commands"]["llama-server"]
    assert (Path(r["path"]).parent / "Modelfile").read_text().splitlines()[1] == f"ADAPTER ./{Path(r['path']).name}"
    assert r["bytes"] < store.get_model("base")["bytes"] / 10


def test_base_plus_adapter_generates_what_the_merged_f16_export_does(trained_workspace, adapter_export,
                                                                     base_model_dir, tmp_path):
    """Greedy decoding on the held-out prompts: the F16 base with the adapter applied by llama.cpp at run time vs
    the merged F16 export (merge_and_unload, then the converter). Both compute in F16 weights + F32 activations;
    the merged one rounds W + (alpha/r)·B·A to F16 once, the adapter path adds the F32 low-rank product to the
    rounded W at every token, so near-ties between two next tokens may break differently."""
    store, config, run_id, run_dir = trained_workspace
    r, _ = adapter_export
    base_f16 = tmp_path / "base-f16.gguf"
    ex.convert(base_model_dir, base_f16)
    merged = ex.export_run(store, config, run_id, "f16")
    prompts = ex.held_out_prompts(run_dir) + [[{"role": "user", "content": p}] for p in (
        "remind me to buy milk on monday", "ping me to email bob at noon")]
    template = (run_dir / "adapter" / "chat_template.jinja").read_text()
    parity = ex.adapter_parity(base_f16, Path(r["path"]), Path(merged["path"]), prompts, template, max_tokens=12)
    print("adapter parity:", json.dumps(parity, indent=1))
    assert parity["prompts"] == len(prompts)
    # measured: 5 of 6 identical; the one difference was a near-tie the adapter did not even touch
    assert parity["share_identical"] >= 2 / 3, parity["pairs"]


def test_cli_exports_an_adapter_and_lists_it_under_its_base(trained_workspace):
    store, config, run_id, _ = trained_workspace
    forge = [sys.executable, "-m", "tui.launch", "-w", str(config.workspace_path())]
    p = subprocess.run([*forge, "export", run_id, "--adapter", "--json"], capture_output=True, text=True, cwd=REPO,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["base_id"] == "base" and out["model_id"].startswith(f"{run_id}-lora")
    listed = json.loads(subprocess.run([*forge, "models", "--json"], capture_output=True, text=True, cwd=REPO).stdout)
    kinds = {m["model_id"]: (m["kind"], m["base_id"]) for m in listed}
    assert kinds[out["model_id"]] == ("adapter", "base") and kinds["base"] == ("model", None)
    human = subprocess.run([*forge, "models"], capture_output=True, text=True, cwd=REPO).stdout
    assert f"└ {out['model_id']}" in human and "adapter of base" in human
    bad = subprocess.run([*forge, "export", run_id, "--adapter", "--base", out["model_id"]], capture_output=True,
                         text=True, cwd=REPO)
    assert bad.returncode == 1 and "is itself an adapter" in bad.stderr and "Traceback" not in bad.stderr


def test_adapters_llama_cpp_cannot_express_are_refused_with_the_reason(trained_workspace, tmp_path):
    import shutil

    from forge.models.lora_gguf import LoraConversionError, convert_adapter

    _, _, _, run_dir = trained_workspace
    base = json.loads((run_dir / "adapter" / "forge_adapter.json").read_text())["base_path"]
    for change, message in (({"use_dora": True}, "DoRA"), ({"peft_type": "IA3"}, "only LoRA")):
        adapter = tmp_path / f"a-{message}"
        shutil.copytree(run_dir / "adapter", adapter)
        cfg = json.loads((adapter / "adapter_config.json").read_text())
        (adapter / "adapter_config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(LoraConversionError, match=message):
            convert_adapter(adapter, Path(base), tmp_path / "x.gguf", {}, "x")
    assert not (tmp_path / "x.gguf").exists()


def test_rslora_alpha_is_rescaled_for_llama_cpp():
    from forge.models.lora_gguf import effective_alpha

    assert effective_alpha({"lora_alpha": 16, "r": 8}) == 16
    assert effective_alpha({"lora_alpha": 16, "r": 16, "use_rslora": True}) == pytest.approx(64)
