"""Export wall time vs calling the same steps directly (merge + converter CLI + quantize) on the same run
(goal ≥ 0.9×, i.e. forge adds ≤ 10%). forge's figure includes its provenance rewrite, the template-parity gate and
the smoke test, which the bare steps do not do.
Usage: .venv/bin/python -m benchmarks.bench_export [QUANT]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from forge.config import Config
from forge.models import export as ex
from forge.models.base_model import materialise
from forge.store import Store
from forge.train import runs
from forge.train.spec import TrainSpec


def trained_run(ws: Path, base: Path):
    config = Config(workspace=str(ws))
    store = Store.for_workspace(ws)
    pairs = [("remind me to call mom tomorrow at 5", "call mom | tomorrow at 5"),
             ("ping me to water the plants tonight", "water the plants | tonight")]
    store.ingest([{"extract_key": f"k{i}", "source_kind": "jsonl", "source_ref": "x", "tags": [],
                   "messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}
                  for i, (u, a) in enumerate(pairs)])
    for i in store.ids():
        store.set_status(i, "approved")
    run_id, run_dir = runs.create_run(store, config, TrainSpec(base_model=str(base), max_steps=1, batch_size=2))
    final = runs.wait(runs.launch(run_dir), run_dir)
    assert final["status"] == "completed", final
    return store, config, run_id, run_dir


def bare(run_dir: Path, base: Path, out: Path, quant: str) -> float:
    t = time.perf_counter()
    import llama_cpp
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                      str(run_dir / "adapter")).merge_and_unload()
    model.save_pretrained(out / "hf")
    AutoTokenizer.from_pretrained(run_dir / "adapter").save_pretrained(out / "hf")
    subprocess.run(ex.converter_command(out / "hf", out / "f16.gguf"), check=True, capture_output=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ex.QUANT_FTYPES[quant]
    assert llama_cpp.llama_model_quantize(str(out / "f16.gguf").encode(), str(out / "q.gguf").encode(), params) == 0
    return time.perf_counter() - t


def main(quant: str = "q4_k_m") -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="forge-bench-export-"))
    base = materialise(Path(tempfile.gettempdir()) / "forge-bench-base-hf", print)
    store, config, run_id, run_dir = trained_run(tmp / "ws", base)
    (tmp / "bare").mkdir()
    import llama_cpp  # noqa: F401 - imports paid before either timing, so neither pays them
    import peft  # noqa: F401
    import transformers  # noqa: F401
    t_bare = bare(run_dir, base, tmp / "bare", quant)
    t = time.perf_counter()
    r = ex.export_run(store, config, run_id, quant)
    t_forge = time.perf_counter() - t
    timings = store.get_model(r["model_id"])["meta"]["timings"]
    result = {"quant": quant, "bare_steps_s": round(t_bare, 1), "forge_export_s": round(t_forge, 1),
              "ratio": round(t_bare / t_forge, 2), "forge_stages_s": timings, "goal": ">= 0.9"}
    print(result)
    return result


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["q4_k_m"]))
