"""LoRA adapters in the TUI and `forge eval`, with the real bundled SmolLM2, a real 2-step LoRA exported by
`forge export --adapter`, real llama.cpp and a real companion started from the UI.

Eval mode compares two of {adapters, base} at a time on one held-out file (an adapter runs as base + adapter);
outputs are stored per system, so three systems make three pairs. Companion mode lists adapters under their base,
adds one of the served base without reloading it, the chat switches adapter between turns and labels each reply
with what answered it, an adapter of another registered base is served on that base loaded beside the first, and
one whose base is not registered is refused in one line. An adapter's greedy output in eval is
what the companion returns for the same adapter and prompt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from textual.widgets import DataTable, Input, Select, Static

from forge.config import load_config
from forge.store import Store
from tests.companion.test_adapters import loud_adapter, register_adapter, session_adapter
from tests.conftest import REPO, free_port
from tests.tui.helpers import wait_until
from tui.app import make_app
from tui.screens.companion import CompanionScreen
from tui.screens.eval import EvalScreen

pytestmark = pytest.mark.slow

HELD_OUT = [("ping me to take out the trash on monday", "take out the trash | monday"),
            ("remind me about the vet appointment at 3", "vet appointment | at 3")]


@pytest.fixture(scope="module")
def lora_ws(trained_workspace, tmp_path_factory):
    """A workspace with the bundled `base` and three adapters: `run-lora` (the session run's LoRA, exported for
    real), `loud-lora` (the same LoRA with alpha ×200, so its greedy text surely differs from the base's) and
    `alien-lora` (an adapter of a base `alt` this workspace does not serve). (config path, workspace, held-out file)"""
    from tests.conftest import workspace_with_base

    run_dir = trained_workspace[3]
    adapter = session_adapter(trained_workspace)
    ws = tmp_path_factory.mktemp("lora-ui-ws")
    cfg_path, config, store, base = workspace_with_base(ws, {"companion": {
        "max_queue": 8, "request_timeout_s": 600, "drain_timeout_s": 60, "n_ctx": 1024, "max_tokens": 24}})
    register_adapter(store, config, "run-lora", Path(adapter["path"]), adapter["meta"])
    loud = loud_adapter(run_dir, ws)
    register_adapter(store, config, "loud-lora", loud, adapter["meta"])
    twin = ws / "models" / "twin" / Path(base["path"]).name  # a second registered base (SmolLM2's file again)
    twin.parent.mkdir(parents=True)
    os.link(base["path"], twin)
    store.register_model({**{k: base[k] for k in ("quant", "bytes", "sha256")}, "id": "twin", "name": "twin",
                          "path": str(twin), "run_id": None, "status": "ready", "meta": {}},
                         models_dir=config.workspace_path() / "models")
    register_adapter(store, config, "twin-lora", loud, {  # the same LoRA, registered as made for twin, not for base
        "kind": "adapter", "base_id": "twin", "provenance": {"forge.base_sha256": "1" * 64}})
    register_adapter(store, config, "alien-lora", Path(adapter["path"]), {
        "kind": "adapter", "base_id": "alt", "provenance": {"forge.base_sha256": "0" * 64}})
    store.close()
    held = ws / "held.jsonl"
    held.write_text("".join(json.dumps({"messages": [{"role": "user", "content": u}, {"role": "assistant",
                                                                                      "content": a}]}) + "\n"
                            for u, a in HELD_OUT))
    return cfg_path, ws, held


@pytest.fixture(scope="module")
def evaluated(lora_ws):
    """`loud-lora` against `base` on the held-out file, through forge.eval (the budget: auto): its result, with
    "outputs": model id → the stored outputs."""
    from forge import eval as ev

    cfg_path, ws, held = lora_ws
    store = Store.for_workspace(ws)
    try:
        r = ev.evaluate(store, "loud-lora", "base", test_file=str(held), config=load_config(cfg_path, environ={}))
        r["outputs"] = {mid: outputs(store, mid, r["dataset"]) for mid in ("loud-lora", "base")}
        return r
    finally:
        store.close()


def outputs(store, model_id: str, dataset: str) -> list[str]:
    row = next(e for e in store.evals(model_id) if e["dataset"] == dataset)
    return [o["output"] for o in row["outputs"]]


def text_of(widget) -> str:
    return str(widget.render())


def panel_text(static) -> str:
    """What a Static holding rich renderables (Eval mode's side panels) shows."""
    from rich.console import Console

    with open(os.devnull, "w") as sink:
        console = Console(width=200, record=True, file=sink)
        console.print(static.content)
        return console.export_text()


def open_app(lora_ws):
    cfg_path, ws, _ = lora_ws
    config = load_config(cfg_path, environ={})
    config.companion.port = free_port()
    store = Store.for_workspace(ws)
    return make_app(config, store), store


async def test_eval_mode_compares_adapter_vs_adapter_vs_base_pair_by_pair(lora_ws, evaluated):
    _, ws, held = lora_ws
    app, store = open_app(lora_ws)
    try:
        async with app.run_test(size=(170, 50)) as pilot:
            await pilot.press("f7")
            screen = app.screen
            assert isinstance(screen, EvalScreen)
            model, baseline = screen.query_one("#eval-model", Select), screen.query_one("#eval-baseline", Select)
            # each base with its adapters under it, as Models mode lists them; an orphan adapter last
            assert [str(label) for label, _ in baseline._options if str(label)] == [
                "twin", "  └ twin-lora (LoRA of twin)", "base", "  └ loud-lora (LoRA of base)",
                "  └ run-lora (LoRA of base)", "  └ alien-lora (LoRA of alt)"]
            screen.query_one("#eval-file", Input).value = str(held)
            model.value, baseline.value = "loud-lora", "run-lora"
            await pilot.pause()
            await pilot.press("ctrl+g")  # adapter vs adapter: both run on base, each with its own LoRA
            status = screen.query_one("#eval-status")
            assert await wait_until(pilot, lambda: str(status.render()) == "done", 600, 0.5), str(status.render())
            dataset = evaluated["dataset"]
            loud, run_lora = outputs(store, "loud-lora", dataset), outputs(store, "run-lora", dataset)
            assert loud == evaluated["outputs"]["loud-lora"]  # greedy: the same text as in the earlier eval
            assert loud != run_lora  # the adapters were applied, each its own
            assert "tuned · loud-lora (LoRA of base)" in panel_text(screen.query_one("#side-model"))
            assert "baseline · run-lora (LoRA of base)" in panel_text(screen.query_one("#side-baseline"))
            table = screen.query_one("#eval-summary", DataTable)
            assert await wait_until(pilot, lambda: "tuned − run-lora (95 % CI)" in
                                    [str(c.label) for c in table.columns.values()], 30)

            # the third pair from the stored outputs, nothing generated again: run-lora (this run) vs base (the
            # loud-lora vs base eval)
            model.value, baseline.value = "run-lora", "base"
            await pilot.pause()
            assert await wait_until(pilot, lambda: screen.pair is not None and screen.pair[1]["model_id"] == "base"
                                    and screen.compared is not None, 30)
            m, b = screen.pair
            assert (m["model_id"], b["model_id"], m["dataset"]) == ("run-lora", "base", dataset)
            assert "base · base" in panel_text(screen.query_one("#side-baseline"))
            assert str(status.render()) == "done"
            assert evaluated["outputs"]["base"] != loud
    finally:
        store.close()


def test_forge_eval_takes_adapter_ids_on_either_side(lora_ws):
    _, ws, held = lora_ws
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}

    def forge(*args):
        return subprocess.run([sys.executable, "-m", "forge.cli", "--workspace", str(ws), *args], capture_output=True,
                              text=True, cwd=REPO, env=env, timeout=600)

    p = forge("eval", "base", "--baseline", "run-lora", "--test-file", str(held), "--max-tokens", "8", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["n"] == 2 and r["max_tokens"] == 8 and "run-lora" in r["comparisons"]
    assert r["baseline"]["errors"] == 0 and r["model"]["errors"] == 0
    p = forge("eval", "alien-lora", "--test-file", str(held))
    assert p.returncode != 0
    line = p.stderr.strip().splitlines()[-1]
    assert "alien-lora is a LoRA adapter of alt, which is not in the registry" in line and "Traceback" not in p.stderr


async def test_companion_chat_switches_adapter_between_turns_and_matches_eval(lora_ws, evaluated):
    app, store = open_app(lora_ws)
    try:
        async with app.run_test(size=(170, 50)) as pilot:
            await pilot.press("f6")
            screen = app.screen
            assert isinstance(screen, CompanionScreen)
            picker = screen.query_one("#companion-model", Select)
            assert [str(label) for label, _ in picker._options] == [
                "twin", "  └ twin-lora (LoRA of twin)", "base", "  └ loud-lora (LoRA of base)",
                "  └ run-lora (LoRA of base)", "  └ alien-lora (LoRA of alt)"]
            health = screen.query_one("#companion-health", Static)
            await pilot.press("ctrl+s")
            assert await wait_until(pilot, lambda: "healthy" in text_of(health), 180, 0.25), text_of(health)
            started = app.companion.health()
            log = screen.query_one("#chat-log")

            async def ask(text: str) -> str:
                n = len(screen.history)
                await pilot.press(*text, "enter")
                assert await wait_until(pilot, lambda: len(screen.history) == n + 2, 180, 0.25), \
                    [text_of(w) for w in log.children]
                return text_of(log.children[-1])

            assert (await ask("remind me to call mom")).startswith("base  ")

            picker.value = "loud-lora"  # an adapter of the served base: added, no base reload
            title = screen.query_one("#chat-title")
            assert await wait_until(pilot, lambda: screen.chat_model == "loud-lora", 120, 0.25), \
                [n.message for n in app._notifications]
            assert "chat with loud-lora (LoRA of base)" in text_of(title)
            now = app.companion.health()
            assert now["adapters"] == ["loud-lora"] and now["model"] == "base"
            assert (now["worker_pid"], now["loaded_at"], now.get("restarts", 0)) == (
                started["worker_pid"], started["loaded_at"], started.get("restarts", 0))
            assert (await ask("and the dentist on friday")).startswith("loud-lora (LoRA of base)  ")

            picker.value = "base"  # back to the base for the next turn
            await pilot.pause()
            assert screen.chat_model is None
            assert (await ask("thanks")).startswith("base  ")
            assert [m["role"] for m in screen.history] == ["user", "assistant"] * 3
            assert all(set(m) == {"role", "content"} for m in screen.history)

            picker.value = "alien-lora"  # made for another base: one line saying why, nothing loaded
            assert await wait_until(pilot, lambda: any("alien-lora" in n.message for n in app._notifications), 10)
            said = next(n.message for n in app._notifications if "alien-lora" in n.message)
            assert "made for base 'alt', not for 'base'" in said and "\n" not in said
            assert screen.chat_model is None and app.companion.health()["adapters"] == ["loud-lora"]

            picker.value = "twin-lora"  # made for another registered base: the companion loads it beside base
            assert await wait_until(pilot, lambda: screen.chat_model == "twin-lora", 180, 0.25), \
                [n.message for n in app._notifications]
            assert any(n.message == "loading twin beside base for twin-lora…" for n in app._notifications)
            assert "chat with twin-lora (LoRA of twin)" in text_of(title)
            assert (await ask("and the dentist on friday")).startswith("twin-lora (LoRA of twin)  ")
            now = app.companion.health()
            assert now["model"] == "base" and now["worker_pid"] == started["worker_pid"]  # the served base stays
            assert {m["model"] for m in now["loaded"]} == {"base", "twin"}, now
            picker.value = "base"
            await pilot.pause()
            assert screen.chat_model is None

            # eval's greedy output of the adapter (and of the base) is the companion's for the same prompt
            for model_id in ("loud-lora", "base"):
                for (user, _), want in zip(HELD_OUT, evaluated["outputs"][model_id]):
                    r = httpx.post(f"{app.companion.url}/v1/chat/completions", timeout=600, json={
                        "model": model_id, "messages": [{"role": "user", "content": user}], "temperature": 0,
                        "seed": 0, "max_tokens": evaluated["max_tokens"]})
                    assert r.status_code == 200 and r.json()["model"] == model_id, r.text
                    assert r.json()["choices"][0]["message"]["content"].strip() == want, (model_id, user)
            assert evaluated["outputs"]["loud-lora"] != evaluated["outputs"]["base"]
            await pilot.press("ctrl+s")
            assert await wait_until(pilot, lambda: "stopped" in text_of(health), 30)
    finally:
        app.companion.stop()
        store.close()
