"""The model holder: worker processes, bases loaded on demand, blue/green swaps, all on the API's event loop.

Several bases are served side by side (companion.max_loaded_models), each in a Slot: its worker process, the LoRA
adapters loaded on it (only ever adapters made for that base) and the requests waiting for it. One of them is the
default, which answers requests that name no registered model. A request naming a registered base or adapter that
is not loaded loads it on demand: one load per base however many requests ask for it, the least recently used idle
base unloaded first when the bound is reached (a base with a request running or waiting is never unloaded: the load
waits for one to go idle), as Ollama (OLLAMA_MAX_LOADED_MODELS) and llama-swap do.

Load outside the lock, swap under it: a swap starts a new worker with the new model, waits for its smoke test,
then makes it the default. Requests waiting for the old worker move to the new one at once; the one request running
on the old worker finishes there, and the old worker exits when it has drained. A worker that dies (a crash inside
llama.cpp, SIGKILL, a stuck generation we killed) fails only its own request; the holder starts a fresh worker
with the same model and the requests waiting for it carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator

import anyio

from forge import child_env


class CompanionError(Exception):
    """An error with an HTTP status and an OpenAI error type; the message is shown to the client."""

    status = 500
    type = "server_error"

    def __init__(self, message: str, status: int | None = None, type_: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.status = status or self.status
        self.type = type_ or self.type
        self.headers = headers or {}


def error_body(message: str, type_: str, param: str | None = None) -> dict:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": type_}}


class Busy(CompanionError):
    status, type = 429, "rate_limit_exceeded"


class LoadFailed(CompanionError):
    status, type = 422, "model_load_failed"


def exit_reason(returncode: int) -> str:
    return f"crashed (signal {signal.Signals(-returncode).name})" if returncode < 0 else \
        f"exited with status {returncode}"


@dataclass
class WorkerOptions:
    n_ctx: int = 2048
    n_threads: int | None = None
    n_gpu_layers: int = 0
    max_tokens: int = 512
    load_timeout_s: float = 300
    request_timeout_s: float = 300
    module: str = "companion.worker"  # what runs a model: `python -m MODULE MODEL_PATH OPTIONS_JSON`


class Worker:
    """One child process holding one model. Serves one request at a time (`lock`)."""

    _ids = itertools.count(1)

    def __init__(self, model: dict, options: WorkerOptions, env: dict | None = None):
        self.model = model
        self.options = options
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.lock = asyncio.Lock()
        self.gone = asyncio.Event()  # set when retired (swapped out) or dead: waiters go elsewhere
        self.retired = False
        self.dead_reason: str | None = None
        self.inflight = 0
        self.info: dict = {}
        self.loaded_at: float | None = None
        self.pending: dict[int, asyncio.Queue] = {}
        self._reader: asyncio.Task | None = None
        self.on_death = None  # callback(worker) set by the pool
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self.adapters: dict[str, dict] = {}  # LoRA adapters (registry records) loaded on this worker
        self.slot: Slot | None = None  # the base it serves in the pool (set when it is installed)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.dead_reason is None and self.proc is not None and self.proc.returncode is None

    async def start(self, before_smoke=None) -> dict:
        """Spawn, load, smoke-test. `before_smoke` (async) runs between load and smoke test. Raises LoadFailed
        with the reason; the process is gone then."""
        opts = {"n_ctx": self.options.n_ctx, "n_threads": self.options.n_threads,
                "n_gpu_layers": self.options.n_gpu_layers, "max_tokens": self.options.max_tokens}
        if self.adapters:
            opts["adapters"] = {i: a["path"] for i, a in self.adapters.items()}
        env = child_env(**(self.env or {}))
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.options.module, self.model["path"], json.dumps(opts),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, limit=64 * 1024 * 1024)
        self._stderr_task = asyncio.create_task(self._drain_stderr())  # never let a full pipe block the worker
        try:
            line = await asyncio.wait_for(self._load(before_smoke), self.options.load_timeout_s)
        except asyncio.TimeoutError:
            await self.kill()
            raise LoadFailed(f"model {self.model['id']} did not load within {self.options.load_timeout_s:.0f} s")
        except BaseException:  # cancelled (the server stops): a half-loaded model must not outlive us
            self._kill_now()
            raise
        if line.get("event") != "ready":
            await self.kill()
            raise LoadFailed(f"model {self.model['id']} failed to load: {line.get('error')}")
        self.info = line
        self.loaded_at = time.time()
        self._reader = asyncio.create_task(self._read())
        return line

    async def _load(self, before_smoke) -> dict:
        line = await self._next_event()
        if line.get("event") != "loaded":
            return line
        if before_smoke is not None:
            await before_smoke()
        self.proc.stdin.write(b"smoke\n")
        await self.proc.stdin.drain()
        return await self._next_event()

    async def _next_event(self) -> dict:
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                rc = await self.proc.wait()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._stderr_task), 2)
                err = list(self.stderr_tail)
                why = exit_reason(rc)
                detail = next((e for e in reversed(err) if e.strip()), "")
                return {"event": "failed", "error": why + (f": {detail[-300:]}" if detail else "")}
            try:
                msg = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a library printed to stdout; not ours
            if "event" in msg:
                return msg

    async def _drain_stderr(self) -> None:
        with contextlib.suppress(Exception):
            while line := await self.proc.stderr.readline():
                self.stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    async def _read(self) -> None:
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                break
            try:
                msg = json.loads(raw)
            except json.JSONDecodeError:
                continue
            q = self.pending.get(msg.get("id"))
            if q is not None:
                q.put_nowait(msg)
        rc = await self.proc.wait()
        if self.dead_reason is None:
            self.dead_reason = f"model worker {exit_reason(rc)}"
        self.gone.set()
        for q in self.pending.values():
            q.put_nowait({"error": {"status": 500, "type": "worker_crashed",
                                    "message": f"{self.dead_reason} during this request; "
                                               "a new worker is starting, retry the request"}})
        if self.on_death and not self.retired:
            self.on_death(self)

    async def call(self, op: str, params: dict, stream: bool) -> AsyncIterator[dict]:
        """Messages from the worker for one request: chunks then end, or one result, or one error. The caller
        holds `lock`. A generation past request_timeout_s kills the worker (it restarts) and raises 504."""
        rid = next(self._ids)
        q: asyncio.Queue = asyncio.Queue()
        self.pending[rid] = q
        finished = False
        try:
            if not self.alive:
                raise CompanionError(f"{self.dead_reason or 'model worker is not running'}; retry the request",
                                     503, "worker_unavailable")
            self.proc.stdin.write((json.dumps({"id": rid, "op": op, "params": params, "stream": stream}) + "\n")
                                  .encode())
            await self.proc.stdin.drain()
            deadline = time.monotonic() + self.options.request_timeout_s
            while True:
                try:
                    msg = await asyncio.wait_for(q.get(), max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    self.dead_reason = (f"generation ran past request_timeout_s "
                                        f"({self.options.request_timeout_s:.0f} s); the worker was restarted")
                    await self.kill()
                    raise CompanionError(self.dead_reason, 504, "timeout") from None
                if "error" in msg:
                    finished = True
                    e = msg["error"]
                    raise CompanionError(e["message"], e.get("status", 500), e.get("type"))
                if "end" in msg or "result" in msg:
                    finished = True
                yield msg
                if finished:
                    return
        finally:
            if not finished and self.alive:
                # The client went away mid-stream: stop the generation and wait for its end, so the next
                # request on this worker never sees this one's tokens. Shielded: the request's own cancellation
                # (Starlette cancels a stream whose client left, again at every await) must not cut this short,
                # or the lease would let the next request in while this one still generates.
                with anyio.CancelScope(shield=True):
                    try:
                        self.proc.stdin.write((json.dumps({"cancel": rid}) + "\n").encode())
                        await self.proc.stdin.drain()
                        await asyncio.wait_for(self._until_end(q), 30)
                    except Exception:  # no end within 30 s, or the pipe is gone: the worker restarts
                        await self.kill()
            self.pending.pop(rid, None)

    @staticmethod
    async def _until_end(q: asyncio.Queue) -> None:
        while True:
            msg = await q.get()
            if "end" in msg or "result" in msg or "error" in msg:
                return

    def _kill_now(self) -> None:
        if self.proc and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    async def retire(self, drain_timeout: float) -> None:
        """Stop taking requests; let the running one finish; then exit."""
        self.retired = True
        self.gone.set()
        deadline = time.monotonic() + drain_timeout
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.proc and self.proc.returncode is None and self.proc.stdin:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()  # the worker exits when its stdin closes
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                await self.kill()


class Slot:
    """One base served: its worker (replaced by a restart when it dies, or by a blue/green reload), the LoRA adapters
    loaded on it, and the requests waiting for it."""

    def __init__(self, model: dict | None = None):
        self.model = model
        self.current: Worker | None = None
        self.ready = asyncio.Event()
        self.retired = False  # unloaded (evicted, or replaced by a swap): requests waiting for it look again
        self.problem: str | None = None
        self.adapters: dict[str, dict] = {}  # LoRA adapters served on this base: id → registry record
        self.adapter_users: dict[str, int] = {}  # requests admitted per adapter and not yet holding the worker
        self.removing: set[str] = set()
        self.waiting = 0  # requests waiting for its worker
        self.ops = 0  # admin work on it (an adapter being removed): it is not unloaded meanwhile
        self.last_used = time.monotonic()

    @property
    def id(self) -> str | None:
        return self.model["id"] if self.model else None

    def free(self) -> bool:
        """Its worker is up and nobody holds it."""
        return self.current is not None and not self.current.lock.locked()

    def idle(self) -> bool:
        """No request running, waiting or admitted for one of its adapters, no admin work: it may be unloaded."""
        return not (self.waiting or self.ops or any(self.adapter_users.values())
                    or (self.current is not None and self.current.lock.locked()))


async def _first(awaitables, timeout: float) -> None:
    """Wait until one of `awaitables` finishes or `timeout` passes; the others are cancelled."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


class ModelPool:
    """The bases served side by side, one Slot each (at most `max_loaded`), one of them the default; admits requests
    (a bounded queue per base), loads bases on demand and unloads the least recently used idle one, swaps the
    default blue/green, restarts dead workers."""

    def __init__(self, options: WorkerOptions, max_queue: int = 16, queue_timeout_s: float = 120,
                 drain_timeout_s: float = 600, worker_env: dict | None = None, exclusive_warmup: bool = False,
                 restart_backoff_s: tuple[float, float] = (0.5, 30), max_loaded: int = 2):
        self.options = options
        self.restart_backoff_s = restart_backoff_s
        self.exclusive_warmup = exclusive_warmup
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.worker_env = worker_env
        self.max_loaded = max_loaded
        self.primary = Slot()  # the default base: requests naming no registered model, /health's `model`, swaps
        self.slots: dict[str, Slot] = {}  # every loaded base by registry id, the default included
        self.loading: dict[str, asyncio.Task] = {}  # on-demand loads in flight: one per base, however many wait
        self.load_lock = asyncio.Lock()  # one on-demand load at a time: each makes its room first
        self.demand: dict[str, int] = {}  # requests waiting for a base to load (they keep it from being unloaded)
        self.load_stages: dict[str, str] = {}  # on-demand loads: "checking" (its registry record and file), "room"
        # (waiting for a base to go idle), "loading"
        self.loads = 0  # bases loaded on demand
        self.evictions = 0  # bases unloaded to make room
        self.swap_lock = asyncio.Lock()
        self.swap_state: dict | None = None
        self.last_swap: dict | None = None
        self.restarts = 0
        self.restart_delays_s: list[float] = []  # the back-off waits of the current restart, for /health and tests
        self.workers: set[Worker] = set()  # every worker started and not yet known to be gone (close() ends them)
        self._tasks: set[asyncio.Task] = set()
        self._changed = asyncio.Event()  # pulsed when a base is loaded or unloaded or a request lets go of one

    # ---- the default base, as the one-base pool named it --------------------------------------------------------
    @property
    def current(self) -> Worker | None:
        return self.primary.current

    @property
    def ready(self) -> asyncio.Event:
        return self.primary.ready

    @property
    def adapters(self) -> dict[str, dict]:
        return self.primary.adapters

    @adapters.setter
    def adapters(self, value: dict[str, dict]) -> None:
        self.primary.adapters = value

    @property
    def problem(self) -> str | None:
        if self.primary.problem:
            return self.primary.problem
        return next((f"{s.id}: {s.problem}" for s in self.slots.values() if s.problem), None)

    @property
    def waiting(self) -> int:
        return sum(s.waiting for s in self._every_slot()) + sum(self.demand.values())

    def _every_slot(self) -> list[Slot]:
        slots = list(self.slots.values())
        return slots if self.primary in slots else [self.primary, *slots]

    def loaded(self) -> list[Slot]:
        """The loaded bases, the default first, then the most recently used."""
        return sorted(self.slots.values(), key=lambda s: (s is not self.primary, -s.last_used))

    def describe(self) -> list[dict]:
        """The loaded bases as /health lists them."""
        now = time.monotonic()
        out = []
        for s in self.loaded():
            w = s.current
            out.append({"model": s.id, "default": s is self.primary, "adapters": sorted(s.adapters),
                        "worker_pid": w.pid if w and w.alive else None, "loaded_at": w.loaded_at if w else None,
                        "busy": bool(w and w.lock.locked()), "queue": s.waiting,
                        "idle_s": round(now - s.last_used, 1) if s.idle() else 0.0, "problem": s.problem})
        return out

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, coro) -> asyncio.Task:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # ---- workers ------------------------------------------------------------------------------------------------
    def _new_worker(self, model: dict, slot: Slot | None, adapters: dict[str, dict] | None = None) -> Worker:
        w = Worker(model, self.options, self.worker_env)
        w.adapters = dict(slot.adapters if adapters is None else adapters)  # a restart brings them along
        w.slot = slot
        w.on_death = self._worker_died
        self.workers.add(w)
        return w

    async def _start(self, w: Worker, before_smoke=None) -> dict:
        try:
            return await w.start(before_smoke)
        except BaseException:
            self.workers.discard(w)
            raise

    def _install(self, new: Worker, slot: Slot) -> Worker | None:
        """Make `new` the worker of `slot` and retire whichever worker serves it at this moment (compared as objects:
        a restart and a swap of the same model id are still two workers). Returns the retired one."""
        old, slot.current = slot.current, new
        new.slot = slot
        slot.problem = None
        slot.ready.set()
        if old is not None and old is not new:
            self._spawn(self._retire(old))
        self._notify()
        return old

    async def _retire(self, w: Worker, drain_timeout: float | None = None) -> None:
        try:
            await w.retire(self.drain_timeout_s if drain_timeout is None else drain_timeout)
        finally:
            if w.proc is None or w.proc.returncode is not None:
                self.workers.discard(w)

    def _retire_slot(self, slot: Slot) -> asyncio.Task | None:
        """Unload a base: requests waiting for it look again (the default's go to the new default, the others load
        it afresh), the one running finishes, then its worker exits."""
        if slot.retired:
            return None
        slot.retired = True
        if self.slots.get(slot.id) is slot:
            del self.slots[slot.id]
        task = self._spawn(self._retire(slot.current)) if slot.current is not None else None
        self._notify()
        return task

    async def start(self, model: dict) -> dict:
        """Load the default base (the server's start)."""
        slot = self.primary
        slot.model = model
        w = self._new_worker(model, slot)
        info = await self._start(w)
        self.slots[model["id"]] = slot
        self._install(w, slot)
        return info

    # ---- requests -----------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lease(self, model_id: str | None = None, adapter: dict | None = None, load=None) -> AsyncIterator[Worker]:
        """A worker, exclusively, for one request: the default base's (`model_id` None), else the worker of base
        `model_id`, which `load(model_id)` (async: its checked registry record) loads on demand when it is not
        loaded. With `adapter` (a registry record) that LoRA adapter is on the worker, loaded on demand. 429 when
        the queue for that base is full, 503 after queue_timeout_s."""
        self._admit(model_id)
        worker = await self._acquire(model_id, adapter, load, time.monotonic() + self.queue_timeout_s)
        slot = worker.slot
        worker.inflight += 1
        slot.last_used = time.monotonic()
        try:
            if adapter is not None and adapter["id"] not in worker.adapters:
                await self._load_adapter(worker, adapter)
            yield worker
        finally:
            worker.inflight -= 1
            slot.last_used = time.monotonic()
            worker.lock.release()
            self._notify()

    def _admit(self, model_id: str | None) -> None:
        slot = self.primary if model_id is None else self.slots.get(model_id)
        if slot is not None:
            if slot.waiting >= self.max_queue and not slot.free():
                raise Busy(f"{slot.waiting} requests are already waiting for {slot.id or 'the model'} "
                           f"(companion.max_queue {self.max_queue}); retry shortly", headers={"Retry-After": "1"})
        elif self.demand.get(model_id, 0) >= self.max_queue:
            raise Busy(f"{self.demand[model_id]} requests are already waiting for {model_id} to load "
                       f"(companion.max_queue {self.max_queue}); retry shortly", headers={"Retry-After": "1"})

    async def _acquire(self, model_id: str | None, adapter: dict | None, load, deadline: float) -> Worker:
        adapter_id = adapter["id"] if adapter else None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CompanionError("timed out waiting for the model; the server is busy", 503, "server_busy",
                                     {"Retry-After": "5"})
            changed = self._changed
            slot = self.primary if model_id is None else self.slots.get(model_id)
            if slot is None:
                if load is None:
                    raise CompanionError(f"model {model_id} is not loaded", 503, "worker_unavailable")
                await self._await_load(model_id, load, left)
                continue  # no await from here until this request counts as waiting for it: it stays loaded
            if slot.retired:  # the default was unloaded to make room: the base loaded in its place takes over
                if not self.loading:  # (none is coming: that load failed, and so did loading the default again)
                    self._reload_default()
                await _first([changed.wait()], left)
                continue
            if adapter_id is not None and adapter_id in slot.removing:
                raise CompanionError(f"adapter {adapter_id} is being removed (POST /admin/adapters loads it again)",
                                     404, "model_not_found")
            slot.waiting += 1
            if adapter_id is not None:
                slot.adapter_users[adapter_id] = slot.adapter_users.get(adapter_id, 0) + 1
            worker = None
            try:
                worker = await self._take(slot, left, changed)
            finally:
                slot.waiting -= 1
                if adapter_id is not None:
                    slot.adapter_users[adapter_id] -= 1
                if worker is None:
                    self._notify()
            if worker is not None:
                return worker

    async def _take(self, slot: Slot, left: float, changed: asyncio.Event) -> Worker | None:
        """The worker of `slot` with its lock held, or None to look again (it was replaced, died or unloaded)."""
        if not slot.ready.is_set():
            await _first([slot.ready.wait(), changed.wait()], left)
            return None
        w = slot.current
        acquire = asyncio.ensure_future(w.lock.acquire())
        gone = asyncio.ensure_future(w.gone.wait())
        try:
            done, _ = await asyncio.wait({acquire, gone}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the request was cancelled (its client left) while it waited
            done = set()
            raise
        finally:
            gone.cancel()
            if acquire not in done:  # never leave an orphan acquire behind: it would take the lock
                acquire.cancel()     # for nobody once the running request releases it
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(acquire)
                if acquire.done() and not acquire.cancelled():
                    w.lock.release()
        if acquire not in done:
            return None
        if w is slot.current and w.alive and not w.retired and not slot.retired:
            return w
        w.lock.release()
        return None

    # ---- bases loaded on demand ---------------------------------------------------------------------------------
    def _load_task(self, model_id: str, load, wanted: bool = True) -> asyncio.Task:
        """The load of `model_id` in flight, started if there is none: concurrent requests share one."""
        task = self.loading.get(model_id)
        if task is None:
            task = self._spawn(self._load(model_id, load, wanted))
            self.loading[model_id] = task

            def finished(t: asyncio.Task) -> None:
                if self.loading.get(model_id) is t:
                    del self.loading[model_id]
                if not t.cancelled():
                    t.exception()  # each waiter gets it through its own await; nobody waiting is no warning

            task.add_done_callback(finished)
        return task

    async def _await_load(self, model_id: str, load, left: float) -> None:
        task = self._load_task(model_id, load)
        self.demand[model_id] = self.demand.get(model_id, 0) + 1
        try:
            await asyncio.wait_for(asyncio.shield(task), left)
        except asyncio.TimeoutError:
            raise self._load_timeout(model_id) from None
        finally:
            self.demand[model_id] -= 1
            if not self.demand[model_id]:
                del self.demand[model_id]
            self._notify()  # a base nobody waits for any more may be unloaded

    def _load_timeout(self, model_id: str) -> CompanionError:
        """The 503 for a load that did not happen within queue_timeout_s, saying what it waited for."""
        return CompanionError(f"model {model_id} was not loaded within companion.queue_timeout_s "
                              f"({self.queue_timeout_s:g} s): {self._load_stage(model_id)}; retry shortly", 503,
                              "server_busy", {"Retry-After": "5"})

    def _load_stage(self, model_id: str) -> str:
        stage = self.load_stages.get(model_id)
        if stage == "room":
            return (f"the {len(self.slots)} loaded models ({', '.join(sorted(self.slots))}) stayed busy and "
                    f"companion.max_loaded_models is {self.max_loaded}")
        if stage == "loading":
            return "it is still loading"
        if stage == "checking":
            return "its registry record and file were still being checked"
        return "other models were loading first"

    async def _load(self, model_id: str, load, wanted: bool = True) -> None:
        """Load base `model_id` beside the others, first unloading the least recently used idle bases while the
        bound is reached (given up, unless not `wanted` by a request, once no request waits for it). A load that
        fails raises LoadFailed naming the model; a default base unloaded for it is loaded again then."""
        async with self.load_lock:
            if model_id in self.slots:
                return
            try:
                self.load_stages[model_id] = "checking"
                record = await load(model_id)
                self.load_stages[model_id] = "room"
                await self._make_room(model_id, time.monotonic() + self.queue_timeout_s, wanted)
                self.load_stages[model_id] = "loading"
                await self._load_now(model_id, record)
            except Exception:
                if self.primary.retired and self.primary.id != model_id:  # the default made room for it: back
                    self._reload_default()
                raise
            finally:
                self.load_stages.pop(model_id, None)

    async def _load_now(self, model_id: str, record: dict) -> None:
        if model_id in self.slots:  # a swap to it finished meanwhile
            return
        slot = Slot(record)
        w = self._new_worker(record, slot)
        await self._start(w)
        if model_id in self.slots:  # a swap to it finished first: that worker serves it
            await self._retire(w, 0)
            return
        self.slots[model_id] = slot
        if self.primary.retired or self.primary.model is None:
            self.primary = slot
        self.loads += 1
        self._install(w, slot)

    def _reload_default(self) -> None:
        """Load the default base again after it was unloaded for a base that then failed to load."""
        model = self.primary.model

        async def same(_model_id: str) -> dict:
            return model

        self._load_task(model["id"], same, wanted=False)

    def _evictable(self, slot: Slot) -> bool:
        return (slot.idle() and not self.demand.get(slot.id)
                and not (slot is self.primary and self.swap_lock.locked()))

    async def _make_room(self, model_id: str, deadline: float, wanted: bool = True) -> None:
        """Unload least recently used idle bases until one more fits; wait for one to go idle (never cut a request
        short); 503 when none does before `deadline`, or (`wanted`) once no request waits for `model_id` any
        more: nothing is unloaded for a load nobody wants."""
        while len(self.slots) >= self.max_loaded:
            changed = self._changed
            if wanted and not self.demand.get(model_id):
                raise CompanionError(f"model {model_id} was not loaded: no request waits for it any more", 503,
                                     "server_busy", {"Retry-After": "5"})
            idle = [s for s in self.slots.values() if self._evictable(s)]
            if idle:
                victim = min(idle, key=lambda s: s.last_used)
                self.evictions += 1
                retiring = self._retire_slot(victim)
                if retiring is not None:  # idle: it exits at once; its memory is back before the next load
                    await asyncio.shield(retiring)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._load_timeout(model_id)
            await _first([changed.wait()], left)

    # ---- failures -----------------------------------------------------------------------------------------------
    def _worker_died(self, w: Worker) -> None:
        self.workers.discard(w)
        slot = w.slot
        if slot is None or slot.retired or w is not slot.current:
            return
        slot.ready.clear()
        slot.problem = w.dead_reason
        self._spawn(self._restart(slot, w))

    async def _restart(self, slot: Slot, dead: Worker) -> None:
        """A fresh worker for the base of `slot`, with back-off while it fails to start. Installed only if `dead` is
        still its worker by then: a swap that finished meanwhile wins, and the replacement is retired."""
        delay, longest = self.restart_backoff_s
        self.restart_delays_s = []
        attempt = 0
        while slot.current is dead and not slot.retired:
            attempt += 1
            w = self._new_worker(dead.model, slot)
            try:
                await self._start(w)
            except LoadFailed as e:
                slot.problem = (f"restarting {dead.model['id']} failed (attempt {attempt}): {e.message}; "
                                f"retrying in {delay:g} s")
                self.restart_delays_s.append(delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
                continue
            if slot.current is dead and not slot.retired:
                self.restarts += 1
                self._install(w, slot)
            else:
                await self._retire(w, 0)
            return

    # ---- swaps --------------------------------------------------------------------------------------------------
    async def swap(self, model_id: str, resolve) -> dict:
        """Blue/green: `resolve(model_id)` (async) gives the checked registry record; load the new model beside
        the old, smoke-test, make it the default, drain the old default. One swap at a time (409). A failed load
        leaves the old model serving and raises LoadFailed with the reason. A base already loaded beside the
        default is loaded afresh the same way, keeping its adapters."""
        if self.swap_lock.locked():
            raise CompanionError(f"a swap to {self.swap_state and self.swap_state['to']} is already in progress",
                                 409, "swap_in_progress")
        async with self.swap_lock:
            t0 = time.perf_counter()
            old = self.primary
            previous = old.id
            self.swap_state = {"to": model_id, "from": previous, "stage": "verifying", "started": time.time()}
            old_worker, paused = old.current, None

            async def pause_old():
                # Exclusive warm-up: the old worker finishes its request, then waits while the new one runs its
                # smoke test; the requests queued meanwhile go to the new worker right after.
                nonlocal paused
                self.swap_state["stage"] = "smoke test"
                if self.exclusive_warmup and old_worker is not None and old_worker.alive:
                    self.swap_state["stage"] = "waiting for the running request"
                    await old_worker.lock.acquire()
                    paused = old_worker
                    self.swap_state["stage"] = "smoke test"

            try:
                pending = self.loading.get(model_id)
                if pending is not None:  # being loaded on demand: let that finish, then load it afresh here
                    with contextlib.suppress(Exception):
                        await asyncio.shield(pending)
                model = await resolve(model_id)
                self.swap_state["stage"] = "loading"
                keep, refused = self.adapters_for(model, self.slots.get(model_id))
                new = self._new_worker(model, None, keep)
                info = await self._start(new, pause_old)
                self.swap_state["stage"] = "switching"
                target = self.slots.get(model_id)
                if target is None:
                    target = Slot(model)
                    self.slots[model_id] = target
                target.model = model
                target.adapters = dict(keep)
                self.primary = target
                retired = self._install(new, target)  # for the same model: the worker serving at this moment
                if old is not target:
                    retired = old.current
                    self._retire_slot(old)
                result = {"model": model["id"], "previous": previous, "load_ms": info["load_ms"],
                          "swap_ms": round((time.perf_counter() - t0) * 1000, 1), "smoke": info.get("smoke"),
                          "old_inflight": retired.inflight if retired else 0,
                          "adapters": sorted(keep), "adapters_refused": refused}
                self.last_swap = {**result, "at": time.time(), "ok": True}
                return result
            except LoadFailed as e:
                self.last_swap = {"model": model_id, "previous": previous, "ok": False, "error": e.message,
                                  "at": time.time()}
                raise
            finally:
                if paused is not None:
                    paused.lock.release()
                self.swap_state = None

    # ---- LoRA adapters ------------------------------------------------------------------------------------------
    @staticmethod
    def adapter_fits(adapter: dict, model: dict) -> str | None:
        """None when `adapter` was made for `model` (its registry id, or the same file by sha256), else why not."""
        meta = adapter.get("meta") or {}
        base_sha = (meta.get("provenance") or {}).get("forge.base_sha256")
        if meta.get("base_id") == model["id"] or (base_sha and base_sha == model.get("sha256")):
            return None
        return (f"adapter {adapter['id']} was made for base {meta.get('base_id')!r}, not for {model['id']!r}; "
                f"serve {meta.get('base_id')} to use it")

    def adapters_for(self, model: dict, target: Slot | None = None) -> tuple[dict[str, dict], dict[str, str]]:
        """The adapters that come along to a swap to `model`: those of the default base and of `target` (the slot
        that serves `model` already, if any) made for it; and the reasons for the others."""
        candidates = {**self.primary.adapters, **(target.adapters if target else {})}
        removing = self.primary.removing | (target.removing if target else set())
        keep, refused = {}, {}
        for adapter_id, record in candidates.items():
            why = self.adapter_fits(record, model)
            if why is None and adapter_id not in removing:
                keep[adapter_id] = record
            elif why is not None:
                refused[adapter_id] = why
        return keep, refused

    def loaded_adapter(self, adapter_id: str) -> dict | None:
        """The registry record of an adapter loaded on some base (being removed included), else None."""
        return next((s.adapters[adapter_id] for s in self.slots.values() if adapter_id in s.adapters), None)

    def base_for(self, adapter: dict) -> str | None:
        """The loaded base a request for this adapter runs on: the one it is loaded on, else a loaded base it was
        made for (adapter_fits: its base's id first, then the default, then the most recently used). None when none
        is loaded: its own base (meta base_id) is to be loaded."""
        loaded = [s for s in self.slots.values() if not s.retired]
        holding = [s for s in loaded if adapter["id"] in s.adapters]
        if holding:
            return holding[0].id
        base_id = (adapter.get("meta") or {}).get("base_id")
        fits = [s for s in loaded if self.adapter_fits(adapter, s.model) is None]
        fits.sort(key=lambda s: (s.id != base_id, s is not self.primary, -s.last_used))
        return fits[0].id if fits else None

    async def _load_adapter(self, worker: Worker, adapter: dict) -> None:
        """Load `adapter` on `worker` (held by this request): 422 when it was made for another base or llama.cpp
        refuses it."""
        slot = worker.slot
        why = self.adapter_fits(adapter, worker.model)
        if why:  # never expected (requests are routed to a base it fits), and never let through
            raise CompanionError(why, 422, "adapter_mismatch")
        try:
            async with contextlib.aclosing(worker.call("adapter_add", {"adapter_id": adapter["id"],
                                                                       "path": adapter["path"]}, stream=False)) as m:
                async for _ in m:
                    pass
        except CompanionError as e:
            raise CompanionError(f"adapter {adapter['id']} did not load on {worker.model['id']}: {e.message}",
                                 422 if e.status in (400, 500) else e.status, "adapter_load_failed") from None
        worker.adapters[adapter["id"]] = adapter
        if worker is slot.current and not slot.retired:  # (a worker being replaced keeps it to itself)
            slot.adapters[adapter["id"]] = adapter

    def _base_loader(self, adapter: dict, load):
        """`load` for the base an adapter was made for; a base that is not registered is a 422 naming the adapter."""
        if load is None:
            return None

        async def load_base(model_id: str) -> dict:
            try:
                return await load(model_id)
            except CompanionError as e:
                if e.status != 404:
                    raise
                raise CompanionError(f"adapter {adapter['id']} was made for base {model_id!r}, which is not in the "
                                     f"registry (forge models lists them)", 422, "adapter_mismatch") from None

        return load_base

    @contextlib.asynccontextmanager
    async def adapter_lease(self, adapter: dict, load=None) -> AsyncIterator[Worker]:
        """A worker for a request to `adapter`: on a loaded base it was made for, else on its own base loaded on
        demand; the adapter loaded there on demand. 422 when it names no base."""
        base_id = self.base_for(adapter) or (adapter.get("meta") or {}).get("base_id")
        if not base_id:
            raise CompanionError(f"adapter {adapter['id']} names no base model in the registry", 422,
                                 "adapter_mismatch")
        async with self.lease(base_id, adapter, self._base_loader(adapter, load)) as worker:
            yield worker

    async def add_adapter(self, record: dict, load=None) -> dict:
        """Load a LoRA adapter on a loaded base it was made for, without reloading it (the queue order is kept: the
        load waits for the running request); with `load`, on its own base loaded on demand when none is. 422 when
        it was made for a base that is not loaded and cannot be, or llama.cpp refuses it."""
        if self.base_for(record) is None and load is None:
            if self.primary.model is None:
                raise CompanionError("no model is loaded yet; retry shortly", 503, "worker_unavailable")
            raise CompanionError(self.adapter_fits(record, self.primary.model), 422, "adapter_mismatch")
        t0 = time.perf_counter()
        for s in self.slots.values():
            s.removing.discard(record["id"])  # added again while a DELETE waits: it stays
        async with self.adapter_lease(record, load) as worker:
            slot = worker.slot
        return {"adapter_id": record["id"], "base": slot.id, "loaded": sorted(slot.adapters),
                "load_ms": round((time.perf_counter() - t0) * 1000, 1)}

    async def remove_adapter(self, adapter_id: str) -> dict:
        """Stop admitting requests for the adapter, let the admitted ones finish, then free it in the worker."""
        slot = next((s for s in self._every_slot() if adapter_id in s.adapters), None)
        if slot is None:
            raise CompanionError(f"adapter {adapter_id} is not loaded", 404, "model_not_found")
        slot.removing.add(adapter_id)
        slot.ops += 1
        t0 = time.perf_counter()
        try:
            deadline = time.monotonic() + self.drain_timeout_s
            while slot.adapter_users.get(adapter_id) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if adapter_id in slot.adapters and not slot.retired and slot.id in self.slots:
                async with self.lease(slot.id) as worker:  # never loads the base again only to free an adapter
                    if adapter_id in worker.adapters:
                        async with contextlib.aclosing(worker.call("adapter_remove", {"adapter_id": adapter_id},
                                                                   stream=False)) as messages:
                            async for _ in messages:
                                pass
                        worker.adapters.pop(adapter_id, None)
        finally:
            slot.adapters.pop(adapter_id, None)
            slot.removing.discard(adapter_id)
            slot.ops -= 1
            self._notify()
        return {"adapter_id": adapter_id, "base": slot.id, "loaded": sorted(slot.adapters),
                "removed_ms": round((time.perf_counter() - t0) * 1000, 1)}

    async def close(self) -> None:
        """Stop: cancel loads and restarts, let each base finish its running request (5 s), end every other
        worker."""
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*(s.current.retire(5) for s in self._every_slot() if s.current),
                             return_exceptions=True)
        for w in list(self.workers):
            w.retired = True
            await w.kill()
        self.workers.clear()
