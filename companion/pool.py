"""The model holder: worker processes and blue/green swaps, all on the API's event loop.

Load outside the lock, swap under it: a swap starts a new worker with the new model, waits for its smoke test,
then flips `current`. Requests waiting for the old worker move to the new one at once; the one request running on
the old worker finishes there, and the old worker exits when it has drained. A worker that dies (a crash inside
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
        self.adapters: dict[str, dict] = {}  # LoRA adapters (registry records) loaded with the model at start

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


class ModelPool:
    """Holds the current worker; admits requests (bounded queue), swaps models, restarts dead workers."""

    def __init__(self, options: WorkerOptions, max_queue: int = 16, queue_timeout_s: float = 120,
                 drain_timeout_s: float = 600, worker_env: dict | None = None, exclusive_warmup: bool = False,
                 restart_backoff_s: tuple[float, float] = (0.5, 30)):
        self.options = options
        self.restart_backoff_s = restart_backoff_s
        self.exclusive_warmup = exclusive_warmup
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.worker_env = worker_env
        self.current: Worker | None = None
        self.ready = asyncio.Event()
        self.swap_lock = asyncio.Lock()
        self.waiting = 0
        self.swap_state: dict | None = None
        self.last_swap: dict | None = None
        self.restarts = 0
        self.restart_delays_s: list[float] = []  # the back-off waits of the current restart, for /health and tests
        self.problem: str | None = None
        self.workers: set[Worker] = set()  # every worker started and not yet known to be gone (close() ends them)
        self._tasks: set[asyncio.Task] = set()
        self.adapters: dict[str, dict] = {}  # LoRA adapters served on the current base: id → registry record
        self.adapter_users: dict[str, int] = {}  # requests admitted per adapter and not yet holding the model
        self.removing: set[str] = set()

    def _spawn(self, coro) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _new_worker(self, model: dict, adapters: dict[str, dict] | None = None) -> Worker:
        w = Worker(model, self.options, self.worker_env)
        w.adapters = dict(self.adapters if adapters is None else adapters)  # a restart brings them along
        w.on_death = self._worker_died
        self.workers.add(w)
        return w

    async def _start(self, w: Worker, before_smoke=None) -> dict:
        try:
            return await w.start(before_smoke)
        except BaseException:
            self.workers.discard(w)
            raise

    def _install(self, new: Worker) -> Worker | None:
        """Make `new` the serving worker and retire whichever worker serves at this moment (compared as objects:
        a restart and a swap of the same model id are still two workers). Returns the retired one."""
        old, self.current = self.current, new
        self.problem = None
        self.ready.set()
        if old is not None and old is not new:
            self._spawn(self._retire(old))
        return old

    async def _retire(self, w: Worker, drain_timeout: float | None = None) -> None:
        try:
            await w.retire(self.drain_timeout_s if drain_timeout is None else drain_timeout)
        finally:
            if w.proc is None or w.proc.returncode is not None:
                self.workers.discard(w)

    async def start(self, model: dict) -> dict:
        w = self._new_worker(model)
        info = await self._start(w)
        self._install(w)
        return info

    # ---- requests -----------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Worker]:
        """The current worker, exclusively, for one request. 429 when the queue is full, 503 after
        queue_timeout_s."""
        if self.waiting >= self.max_queue and not self._idle():
            raise Busy(f"{self.waiting} requests are already waiting for the model (companion.max_queue "
                       f"{self.max_queue}); retry shortly", headers={"Retry-After": "1"})
        self.waiting += 1
        deadline = time.monotonic() + self.queue_timeout_s
        worker = None
        try:
            while worker is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CompanionError("timed out waiting for the model; the server is busy", 503,
                                         "server_busy", {"Retry-After": "5"})
                if not self.ready.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.ready.wait(), left)
                    continue
                w = self.current
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
                    continue
                if w is self.current and w.alive and not w.retired:
                    worker = w
                else:
                    w.lock.release()
        finally:
            self.waiting -= 1
        worker.inflight += 1
        try:
            yield worker
        finally:
            worker.inflight -= 1
            worker.lock.release()

    def _idle(self) -> bool:
        w = self.current
        return w is not None and not w.lock.locked()

    # ---- failures -----------------------------------------------------------------------------------------
    def _worker_died(self, w: Worker) -> None:
        self.workers.discard(w)
        if w is not self.current:
            return
        self.ready.clear()
        self.problem = w.dead_reason
        self._spawn(self._restart(w))

    async def _restart(self, dead: Worker) -> None:
        """A fresh worker for the model of `dead`, with back-off while it fails to start. Installed only if
        `dead` is still the current worker by then: a swap that finished meanwhile wins, and the replacement
        is retired."""
        delay, longest = self.restart_backoff_s
        self.restart_delays_s = []
        attempt = 0
        while self.current is dead:
            attempt += 1
            w = self._new_worker(dead.model)
            try:
                await self._start(w)
            except LoadFailed as e:
                self.problem = (f"restarting {dead.model['id']} failed (attempt {attempt}): {e.message}; "
                                f"retrying in {delay:g} s")
                self.restart_delays_s.append(delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
                continue
            if self.current is dead:
                self.restarts += 1
                self._install(w)
            else:
                await self._retire(w, 0)
            return

    # ---- swaps --------------------------------------------------------------------------------------------
    async def swap(self, model_id: str, resolve) -> dict:
        """Blue/green: `resolve(model_id)` (async) gives the checked registry record; load the new model beside
        the old, smoke-test, flip, drain the old. One swap at a time (409). A failed load leaves the old model
        serving and raises LoadFailed with the reason."""
        if self.swap_lock.locked():
            raise CompanionError(f"a swap to {self.swap_state and self.swap_state['to']} is already in progress",
                                 409, "swap_in_progress")
        async with self.swap_lock:
            t0 = time.perf_counter()
            previous = self.current.model["id"] if self.current else None
            self.swap_state = {"to": model_id, "from": previous, "stage": "verifying", "started": time.time()}
            old, paused = self.current, None

            async def pause_old():
                # Exclusive warm-up: the old worker finishes its request, then waits while the new one runs its
                # smoke test; the requests queued meanwhile go to the new worker right after.
                nonlocal paused
                self.swap_state["stage"] = "smoke test"
                if self.exclusive_warmup and old is not None and old.alive:
                    self.swap_state["stage"] = "waiting for the running request"
                    await old.lock.acquire()
                    paused = old
                    self.swap_state["stage"] = "smoke test"

            try:
                model = await resolve(model_id)
                self.swap_state["stage"] = "loading"
                keep, refused = self.adapters_for(model)
                new = self._new_worker(model, keep)
                info = await self._start(new, pause_old)
                self.adapters = keep
                self.swap_state["stage"] = "switching"
                retired = self._install(new)  # the worker serving now: `old`, or a restart's replacement of it
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

    # ---- LoRA adapters on the current base ----------------------------------------------------------------
    @staticmethod
    def adapter_fits(adapter: dict, model: dict) -> str | None:
        """None when `adapter` was made for `model` (its registry id, or the same file by sha256), else why not."""
        meta = adapter.get("meta") or {}
        base_sha = (meta.get("provenance") or {}).get("forge.base_sha256")
        if meta.get("base_id") == model["id"] or (base_sha and base_sha == model.get("sha256")):
            return None
        return (f"adapter {adapter['id']} was made for base {meta.get('base_id')!r}, not for {model['id']!r}; "
                f"serve {meta.get('base_id')} to use it")

    def adapters_for(self, model: dict) -> tuple[dict[str, dict], dict[str, str]]:
        """The served adapters that fit `model` (they come along in a swap), and the reasons for the others."""
        keep, refused = {}, {}
        for adapter_id, record in self.adapters.items():
            why = self.adapter_fits(record, model)
            if why is None and adapter_id not in self.removing:
                keep[adapter_id] = record
            elif why is not None:
                refused[adapter_id] = why
        return keep, refused

    @contextlib.contextmanager
    def adapter_use(self, adapter_id: str | None):
        """Count a request for `adapter_id` from admission until it holds the model, so a DELETE waits for it;
        404 (OpenAI's shape) when the adapter is not served or is being removed."""
        if adapter_id is None:
            yield
            return
        if adapter_id not in self.adapters or adapter_id in self.removing:
            state = "is being removed" if adapter_id in self.removing else "is not loaded"
            raise CompanionError(f"adapter {adapter_id} {state} (POST /admin/adapters loads it)", 404,
                                 "model_not_found")
        self.adapter_users[adapter_id] = self.adapter_users.get(adapter_id, 0) + 1
        try:
            yield
        finally:
            self.adapter_users[adapter_id] -= 1

    async def _adapter_op(self, op: str, params: dict) -> dict:
        async with self.lease() as worker:
            result = None
            async with contextlib.aclosing(worker.call(op, params, stream=False)) as messages:
                async for msg in messages:
                    result = msg.get("result")
            return {**(result or {}), "worker": worker}

    async def add_adapter(self, record: dict) -> dict:
        """Load a LoRA adapter on the serving base, without reloading it (the queue order is kept: the load waits
        for the running request). 422 when it was made for another base or llama.cpp refuses it."""
        async with self.swap_lock:  # never half-way through a swap
            if self.current is None:
                raise CompanionError("no model is loaded yet; retry shortly", 503, "worker_unavailable")
            why = self.adapter_fits(record, self.current.model)
            if why:
                raise CompanionError(why, 422, "adapter_mismatch")
            t0 = time.perf_counter()
            if record["id"] not in self.adapters:
                try:
                    r = await self._adapter_op("adapter_add", {"adapter_id": record["id"], "path": record["path"]})
                except CompanionError as e:
                    raise CompanionError(e.message, 422 if e.status in (400, 500) else e.status,
                                         "adapter_load_failed") from None
                r["worker"].adapters[record["id"]] = record
                self.adapters[record["id"]] = record
            self.removing.discard(record["id"])
            return {"adapter_id": record["id"], "base": self.current.model["id"], "loaded": sorted(self.adapters),
                    "load_ms": round((time.perf_counter() - t0) * 1000, 1)}

    async def remove_adapter(self, adapter_id: str) -> dict:
        """Stop admitting requests for the adapter, let the admitted ones finish, then free it in the worker."""
        if adapter_id not in self.adapters:
            raise CompanionError(f"adapter {adapter_id} is not loaded", 404, "model_not_found")
        self.removing.add(adapter_id)
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.drain_timeout_s
        while self.adapter_users.get(adapter_id) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        async with self.swap_lock:
            try:
                if adapter_id in self.adapters:
                    r = await self._adapter_op("adapter_remove", {"adapter_id": adapter_id})
                    r["worker"].adapters.pop(adapter_id, None)
            finally:
                self.adapters.pop(adapter_id, None)
                self.removing.discard(adapter_id)
        return {"adapter_id": adapter_id, "loaded": sorted(self.adapters),
                "removed_ms": round((time.perf_counter() - t0) * 1000, 1)}

    async def close(self) -> None:
        """Stop: cancel restarts, let the current worker finish its request (5 s), end every other worker."""
        for t in list(self._tasks):
            t.cancel()
        if self.current:
            await self.current.retire(5)
        for w in list(self.workers):
            w.retired = True
            await w.kill()
        self.workers.clear()
