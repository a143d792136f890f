"""Companion mode: start/stop the local OpenAI-compatible server (a child process), its health and request stats
refreshed every second, swap progress, and a chat playground that streams replies from the served model.

The model picker lists each model with its LoRA adapters under it (as Models mode does). Picking an adapter of the
served base adds it (POST /admin/adapters, no base reload) and the chat then sends its id as the OpenAI `model`;
picking a model sends the served base's id again, so the adapter can change between turns. Each reply is labelled
with the model or adapter that answered it. An adapter of another registered base is added too: the companion loads
its base beside the served one on demand (companion.max_loaded_models, least recently used out), and the chat is
with it on that base; one whose base is not registered is refused in one line. Started with an adapter picked, the
companion serves its base and adds it once healthy."""

from __future__ import annotations

import time

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from forge.models.export import is_adapter, models_with_adapters
from tui.messages import AdapterAdded, CompanionStopped, ModelSwapped, ReplyFinished, ReplyStreamed
from tui.screens.worker_errors import ReportsWorkerErrors


def health_text(h: dict | None, url: str, reason: str | None = None, starting: bool = False,
                stopping_for: float | None = None) -> str:
    if stopping_for is not None:
        return (f"[yellow]stopping[/] the companion on {url} … {stopping_for:.0f} s (it has 15 s to finish what it "
                f"serves, then it is killed)")
    if h is None:
        if starting:
            return f"[yellow]starting[/] the companion on {url} … (loading the model)"
        why = f"  [red]{escape(reason)}[/]" if reason else ""
        return f"[b]stopped[/] — nothing answers on {url}. Start it here (ctrl+s) or run `forge serve`.{why}"
    colour = {"healthy": "green", "restarting": "yellow", "loading": "yellow"}.get(h.get("status"), "red")
    fmt = lambda v, unit="": "—" if v is None else f"{v}{unit}"  # noqa: E731
    lines = [f"[{colour}][b]{h.get('status')}[/b][/]  {url}/v1   model [b]{escape(str(h.get('model')))}[/] "
             f"({h.get('quant') or '?'})  loaded {h.get('loaded_at') or '—'}  worker pid {fmt(h.get('worker_pid'))}",
             f"requests {h.get('requests_served', 0)} served · {h.get('requests_failed', 0)} failed · "
             f"queue {h.get('queue', 0)}{' · generating' if h.get('busy') else ''} · "
             f"latency avg {fmt(h.get('avg_latency_ms'), ' ms')} p95 {fmt(h.get('p95_latency_ms'), ' ms')} · "
             f"{fmt(h.get('tokens_per_s'), ' tok/s')} · restarts {h.get('restarts', 0)}"]
    if h.get("adapters"):
        lines.append(f"LoRA adapters on {escape(str(h.get('model')))}: {escape(', '.join(h['adapters']))}")
    if h.get("swap"):
        s = h["swap"]
        lines.append(f"[yellow]swapping {s.get('from')} → {s.get('to')}: {s.get('stage')} "
                     f"({time.time() - s.get('started', time.time()):.1f} s)[/]")
    elif h.get("last_swap"):
        s = h["last_swap"]
        lines.append(f"last swap → {s['model']}: " + (f"ok in {s['swap_ms'] / 1000:.1f} s" if s.get("ok")
                                                      else f"[red]refused: {escape(s.get('error', ''))}[/]"))
    if h.get("problem"):
        lines.append(f"[yellow]{escape(h['problem'])}[/]")
    return "\n".join(lines)


CHAT_TITLE = "Chat playground — Enter sends; ctrl+l clears"


class CompanionScreen(ReportsWorkerErrors, Screen):
    # priority: the chat input has focus, and an Input takes ctrl+w ("delete the word to the left")
    BINDINGS = [
        Binding("ctrl+s", "toggle", "Start/Stop", priority=True),
        Binding("ctrl+w", "swap", "Swap to selected", priority=True),
        Binding("ctrl+l", "clear_chat", "Clear chat"),
    ]
    WORKER_UI = {"swap": ("swap", None, ("#companion-swap",)), "stop": ("stopping the companion", None, ()),
                 "adapter": ("adding the adapter", None, ()),
                 "chat": ("the reply", None, ()), "health": ("the health check", None, ())}

    def __init__(self) -> None:
        super().__init__()
        # The conversation: only the UI thread changes it. A chat worker gets a copy and reports by message.
        self.history: list[dict] = []
        self.replies: dict[int, tuple[dict, Static]] = {}  # id(user turn) -> (the turn, where its reply shows)
        self.chat_workers: dict = {}  # worker -> the user turn it answers
        self.stopping_since: float | None = None
        self.last_health: dict | None = None
        self.starting = False
        self.model_ids: list[str] = []
        self.records: dict[str, dict] = {}  # registry records of the listed models and adapters
        self.chat_model: str | None = None  # the adapter the chat sends as `model`; None: the served base
        self.loaded_adapters: set[str] = set()  # adapters the companion has on its base (health, add results)
        self.pending_adapter: str | None = None  # started with an adapter picked: add it once the base is up
        self.wanted: str | None = None  # the adapter last picked, being added: the chat switches to it when it is

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="companion-main"):
            with Horizontal(id="companion-bar"):
                yield Button("Start", variant="primary", id="companion-toggle")
                yield Select([("base", "base")], value="base", id="companion-model", allow_blank=False)
                yield Button("Swap to this model", id="companion-swap")
            yield Static("", id="companion-health")
            yield Label(CHAT_TITLE, classes="section-title", id="chat-title")
            yield VerticalScroll(id="chat-log")
            yield Input(placeholder="Message the served model", id="chat-input")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "companion"
        self.refresh_models()
        self.query_one("#chat-input", Input).focus()  # typing goes to the chat; the actions are ctrl keys
        self.poll()
        self.set_interval(1.0, self.poll)

    def on_screen_resume(self) -> None:
        self.refresh_models()

    @property
    def companion(self):
        return self.app.companion

    def refresh_models(self) -> None:
        from companion.settings import model_to_serve

        listed = [m for m in models_with_adapters(self.app.store.models()) if m["status"] == "ready"]
        self.records = {m["id"]: m for m in listed}
        ids = [m["id"] for m in listed] or ["base"]
        select = self.query_one("#companion-model", Select)
        current = select.value if isinstance(select.value, str) else None
        default = model_to_serve(self.app.config, None)[0]  # what `forge serve` would pick
        self.model_ids = ids
        select.set_options([(f"  └ {self.shown(i)}" if self.adapter_base(i) else i, i) for i in ids])
        select.value = current if current in ids else (default if default in ids else ids[0])

    def adapter_base(self, model_id: str | None) -> str | None:
        """The base id of a listed adapter; None for a model."""
        record = self.records.get(model_id)
        return (record["meta"].get("base_id") or "?") if record and is_adapter(record) else None

    def shown(self, model_id: str) -> str:
        """A model id, or an adapter's with its base: how the picker and the chat name it."""
        base = self.adapter_base(model_id)
        return f"{model_id} (LoRA of {base})" if base else model_id

    def served(self) -> str | None:
        return (self.last_health or {}).get("model")

    def refusal(self, adapter_id: str) -> str | None:
        """Why the served base cannot take the adapter (the companion's own rule: made for it by id, or for the
        same file by sha256), or None."""
        from companion.pool import ModelPool

        served = self.served()
        return ModelPool.adapter_fits(self.records[adapter_id], self.records.get(served) or {"id": served})

    def show_chat_target(self) -> None:
        served = self.served()
        target = self.chat_model or served
        self.query_one("#chat-title", Label).update(
            CHAT_TITLE + (f" · chat with {escape(self.shown(target))}" if self.last_health and target else ""))

    # ---- health -------------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="health", exit_on_error=False)
    def poll(self) -> None:
        h = self.companion.health()
        self.app.call_from_thread(self.show_health, h)

    def show_health(self, h: dict | None) -> None:
        served = (h or {}).get("model")
        swapped = served and served != (self.last_health or {}).get("model")
        self.last_health = h
        if h is not None:
            self.loaded_adapters = set(h.get("adapters") or [])
        if swapped:  # follow a swap made anywhere; an adapter picked that fits the new base stays picked
            select = self.query_one("#companion-model", Select)
            picked = select.value if isinstance(select.value, str) else None
            if served in self.model_ids and not (self.adapter_base(picked) and self.refusal(picked) is None):
                select.value = served
            if self.chat_model and self.refusal(self.chat_model) is not None:
                self.chat_model = None  # the base it ran on is gone
        if self.pending_adapter and h and h.get("status") == "healthy":
            adapter, self.pending_adapter = self.pending_adapter, None
            self.use_adapter(adapter)
        self.show_chat_target()
        if h and h.get("status") == "healthy":
            self.starting = False
        if self.starting and self.companion.proc is not None and self.companion.proc.poll() is not None:
            self.starting = False
        stopping_for = None if self.stopping_since is None else time.monotonic() - self.stopping_since
        self.query_one("#companion-health", Static).update(
            health_text(h, self.companion.url, self.companion.exit_reason(), self.starting, stopping_for))
        running = h is not None or self.starting
        toggle = self.query_one("#companion-toggle", Button)
        toggle.label = "Stop" if running else "Start"
        toggle.variant = "error" if running else "primary"
        # someone else's server, or ours on its way down
        toggle.disabled = bool(h is not None and not self.companion.owned) or stopping_for is not None
        self.query_one("#companion-swap", Button).disabled = h is None

    # ---- start / stop / swap ------------------------------------------------------------------------------
    def action_toggle(self) -> None:
        if self.stopping_since is not None:
            self.notify("the companion is stopping", severity="warning")
            return
        if self.last_health is not None or self.starting:
            if not self.companion.owned:
                self.notify("this companion was started outside forge's UI; stop it where it runs",
                            severity="warning")
                return
            self.starting = False
            self.stopping_since = time.monotonic()
            self.stop_companion()  # up to 15 s: not on the UI thread
        else:
            model = self.query_one("#companion-model", Select).value
            model = model if isinstance(model, str) else None
            if self.adapter_base(model):  # an adapter: serve its base, then add it
                self.pending_adapter, model = model, self.adapter_base(model)
            self.companion.start(model)
            self.starting = True
        self.poll()

    def action_swap(self) -> None:
        model = self.query_one("#companion-model", Select).value
        if not isinstance(model, str):
            return
        if self.last_health is None:
            self.notify("start the companion first (ctrl+s)", severity="warning")
            return
        adapter = model if self.adapter_base(model) else None
        if adapter and self.refusal(adapter) is None:  # its base is served: add it, no reload
            self.use_adapter(adapter)
            return
        self.query_one("#companion-swap", Button).disabled = True
        self.wanted = adapter
        self.do_swap(self.adapter_base(model) or model, adapter)

    @work(thread=True, exclusive=True, group="swap", exit_on_error=False)
    def do_swap(self, model: str, then_adapter: str | None = None) -> None:
        """Swap to `model`; then add `then_adapter` (an adapter of it) when given."""
        from companion.client import AdminRequestError, SwapError

        try:
            r = self.companion.swap(model)
        except SwapError as e:
            self.app.call_from_thread(self.notify, str(e), severity="error", timeout=10)
        else:
            self.app.call_from_thread(self.app.post_message, ModelSwapped(r))
            if then_adapter:
                try:
                    self.post_message(AdapterAdded(then_adapter, self.companion.add_adapter(then_adapter)))
                except AdminRequestError as e:
                    self.post_message(AdapterAdded(then_adapter, None, str(e)))
        self.app.call_from_thread(self.poll)

    # ---- LoRA adapters ------------------------------------------------------------------------------------
    @on(Select.Changed, "#companion-model")
    def model_picked(self, event: Select.Changed) -> None:
        picked = event.value if isinstance(event.value, str) else None
        if self.adapter_base(picked):
            self.use_adapter(picked)
        else:  # a model: the chat goes to the served base again (an adapter still being added is not used)
            self.wanted = self.pending_adapter = None
            if self.chat_model is not None:
                self.chat_model = None
                self.show_chat_target()

    def use_adapter(self, adapter_id: str) -> None:
        """Chat with the adapter: at once when the served base has it, after POST /admin/adapters when it fits the
        served base; otherwise one line saying why not."""
        base, h = self.adapter_base(adapter_id), self.last_health
        self.wanted = None
        if h is None and not self.starting:
            self.notify(f"{adapter_id} is a LoRA adapter of {base}: ctrl+s starts the companion on {base} and adds it",
                        timeout=6, markup=False)
            return
        if h is None or h.get("status") != "healthy" or not self.served():
            self.pending_adapter = adapter_id  # starting or swapping: added once the companion is healthy
            return
        why = self.refusal(adapter_id)
        if why is not None and base not in self.records:  # nothing registered can serve it
            self.notify(f"{why}, and {base} is not in the registry (F5 Models lists the bases)", severity="warning",
                        timeout=10, markup=False)
            return
        if adapter_id in self.loaded_adapters:
            self.chat_model = adapter_id
            self.show_chat_target()
            return
        if why is not None:  # the companion loads its own base beside the served one (companion.max_loaded_models)
            self.notify(f"loading {base} beside {self.served()} for {adapter_id}…", timeout=6, markup=False)
        self.wanted = adapter_id
        self.add_adapter(adapter_id)

    @work(thread=True, exclusive=True, group="adapter", exit_on_error=False)
    def add_adapter(self, adapter_id: str) -> None:
        from companion.client import AdminRequestError

        try:
            self.post_message(AdapterAdded(adapter_id, self.companion.add_adapter(adapter_id)))
        except AdminRequestError as e:
            self.post_message(AdapterAdded(adapter_id, None, str(e)))

    def on_adapter_added(self, message: AdapterAdded) -> None:
        if message.error is not None:
            self.notify(message.error, severity="error", timeout=10, markup=False)
            return
        self.loaded_adapters |= set(message.result.get("loaded") or [message.adapter_id])
        if self.wanted != message.adapter_id:  # something else was picked meanwhile
            return
        self.wanted = None
        self.chat_model = message.adapter_id
        select = self.query_one("#companion-model", Select)
        if message.adapter_id in self.model_ids and select.value != message.adapter_id:
            select.value = message.adapter_id
        self.show_chat_target()
        self.notify(f"{message.adapter_id} added on {message.result.get('base')}: the chat now uses it")
        self.poll()

    @work(thread=True, exclusive=True, group="stop", exit_on_error=False)
    def stop_companion(self) -> None:
        self.companion.stop()
        self.post_message(CompanionStopped())

    def on_companion_stopped(self, message: CompanionStopped) -> None:
        self.stopping_since = None
        self.chat_model = self.pending_adapter = None  # a new start loads no adapter until one is picked
        self.loaded_adapters = set()
        self.notify("companion stopped")
        self.poll()

    def worker_failed(self, worker, error) -> None:
        if worker.group == "stop":
            self.stopping_since = None
            self.poll()
        elif worker.group == "chat" and worker in self.chat_workers:
            self.reply_finished(ReplyFinished(self.chat_workers.pop(worker), "", "?", error=str(error)))

    @on(Button.Pressed, "#companion-toggle")
    def toggle_pressed(self) -> None:
        self.action_toggle()

    @on(Button.Pressed, "#companion-swap")
    def swap_pressed(self) -> None:
        self.action_swap()

    # ---- chat ---------------------------------------------------------------------------------------------
    def action_clear_chat(self) -> None:
        self.history.clear()
        self.replies.clear()  # replies still streaming are dropped when they arrive
        self.query_one("#chat-log", VerticalScroll).remove_children()

    @on(Input.Submitted, "#chat-input")
    def send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.last_health is None:
            self.notify("the companion is not running: start it with ctrl+s", severity="warning")
            return
        event.input.value = ""
        model = self.chat_model or self.served() or "served"  # this turn's `model`: the adapter, or the base
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(Static(f"[b $accent]you[/]  {escape(text)}", classes="chat-user"))
        reply = Static(f"[b $success]{escape(self.shown(model))}[/]  …", classes="chat-model")
        log.mount(reply)
        log.scroll_end(animate=False)
        turn = {"role": "user", "content": text}
        self.history.append(turn)
        self.replies[id(turn)] = (turn, reply)
        self.chat_workers[self.stream_reply(list(self.history), turn, model)] = turn

    @work(thread=True, group="chat", exit_on_error=False)
    def stream_reply(self, messages: list[dict], turn: dict, model_name: str = "served") -> None:
        """Streams the reply to `turn` (the last of `messages`, a copy of the history) from `model_name` (an adapter
        id, or the base's): reports by message only, with the model the companion says answered."""
        import openai

        client = openai.OpenAI(base_url=f"{self.companion.url}/v1", api_key="forge-tui", max_retries=2,
                               timeout=self.app.config.companion.request_timeout_s)
        parts, model, t0, first = [], "?", time.perf_counter(), None
        try:
            stream = client.chat.completions.create(model=model_name, messages=messages, stream=True,
                                                    max_tokens=self.app.config.companion.max_tokens)
            for chunk in stream:
                model = chunk.model or model
                if chunk.choices and chunk.choices[0].delta.content:
                    first = first or time.perf_counter()
                    parts.append(chunk.choices[0].delta.content)
                    self.post_message(ReplyStreamed(turn, "".join(parts), model))
        except openai.OpenAIError as e:
            self.post_message(ReplyFinished(turn, "".join(parts), model, error=str(e)))
            return
        self.post_message(ReplyFinished(turn, "".join(parts), model, len(parts), time.perf_counter() - t0,
                                        None if first is None else first - t0))

    def on_reply_streamed(self, message: ReplyStreamed) -> None:
        _, target = self.replies.get(id(message.turn), (None, None))
        if target is not None:
            target.update(f"[b $success]{escape(self.shown(message.model))}[/]  {escape(message.text)}")
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    def on_reply_finished(self, message: ReplyFinished) -> None:
        self.chat_workers = {w: t for w, t in self.chat_workers.items() if t is not message.turn}
        self.reply_finished(message)

    def reply_finished(self, message: ReplyFinished) -> None:
        """The reply goes into the history right after the turn it answers, whatever was sent meanwhile; a failed
        turn is taken back; a reply to a cleared chat is dropped."""
        turn = message.turn
        _, target = self.replies.pop(id(turn), (None, None))
        at = next((i for i, t in enumerate(self.history) if t is turn), None)
        if target is None or at is None:
            return
        if message.error is not None:
            target.update(f"[b red]error[/]  {escape(message.error)}")
            del self.history[at]
            return
        self.history.insert(at + 1, {"role": "assistant", "content": message.text})
        ttft = f" · first token {message.first_token_s * 1000:.0f} ms" if message.first_token_s is not None else ""
        target.update(f"[b $success]{escape(self.shown(message.model))}[/]  {escape(message.text)}\n"
                      f"[dim]{message.tokens} tokens in {message.seconds:.1f} s{ttft}[/]")
        self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)
