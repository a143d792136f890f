"""Streaming and the model lease, over real HTTP (uvicorn on loopback, in this process) with the scripted
stand-in worker: a client that leaves mid-stream keeps the model until its generation has really stopped, and a
full queue answers a stream request with a 429 at once."""

from __future__ import annotations

import json
import threading

import httpx

from tests.companion.standin import events, running, script, settle_to_one_worker, standin_app, wait_for

ASK = [{"role": "user", "content": "Tell me a long story."}]


def test_a_client_leaving_mid_stream_holds_the_model_until_its_generation_stopped(tmp_path):
    """The generation takes a while to stop after the cancel (a token in progress); the next request must not
    reach the worker before it has (it used to, the moment the client left: the stand-in then answers 500)."""
    ws = tmp_path / "ws"
    slow = script(ws / "models" / "slow", "slow", reply=" ".join(f"w{i}" for i in range(400)), token_s=0.01,
                  cancel_s=1.0)
    app = standin_app(ws, slow)
    with running(app) as url:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={"messages": ASK, "stream": True},
                          timeout=30) as r:
            assert r.status_code == 200
            first = next(line for line in r.iter_lines() if line)
            assert json.loads(first[6:])["choices"][0]["delta"]["content"] == "w0 "
        # the client hung up: the server tells the worker to stop
        wait_for(lambda: any(e.startswith("cancel ") for e in events(slow)), what="the cancel reaching the worker")
        after = httpx.post(f"{url}/v1/chat/completions", json={"messages": ASK, "max_tokens": 3}, timeout=30)
        assert after.status_code == 200, after.text
        assert after.json()["choices"][0]["message"]["content"] == "w0 w1 w2 "
        log = events(slow)
        assert not [e for e in log if e.startswith("overlap")], log
        ends = [e for e in log if e.startswith(("end ", "start "))]
        assert ends[1].endswith("cancelled") and ends[2].startswith("start "), ends  # stopped, then the next
        pool = app.state.pool
        assert pool.current.pending == {} and not pool.current.lock.locked()
        settle_to_one_worker(pool.current.pid)


def test_a_full_queue_answers_a_stream_request_with_429_at_once(tmp_path):
    """max_queue 1: one request generating (it hangs until its client leaves), one waiting; a third, streamed,
    is refused with 429, Retry-After and OpenAI's error shape, before any stream starts."""
    ws = tmp_path / "ws"
    model = script(ws / "models" / "m", "m")
    app = standin_app(ws, model, max_queue=1)
    with running(app) as url:
        pool = app.state.pool
        waited = {}

        def waiting_request():
            waited["r"] = httpx.post(f"{url}/v1/chat/completions", json={"messages": ASK, "max_tokens": 2},
                                     timeout=30)

        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=30,
                          json={"messages": [{"role": "user", "content": "<<hang>>"}], "stream": True}) as held:
            assert held.status_code == 200
            wait_for(lambda: pool.current.lock.locked(), what="the model held")
            t = threading.Thread(target=waiting_request)
            t.start()
            wait_for(lambda: pool.waiting == 1, what="one request queued")
            refused = httpx.post(f"{url}/v1/chat/completions", json={"messages": ASK, "stream": True}, timeout=30)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert refused.headers["content-type"].startswith("application/json")
            assert refused.json()["error"]["type"] == "rate_limit_exceeded"
        t.join(30)
        assert waited["r"].status_code == 200, waited["r"].text
        assert app.state.stats.failed == 1 and app.state.stats.served == 1
        assert not [e for e in events(model) if e.startswith("overlap")]
        settle_to_one_worker(pool.current.pid)


def test_a_stream_whose_client_left_while_queued_gives_the_model_back(tmp_path):
    """A stream request waits for the model and its client gives up (its own timeout) before the stream starts:
    it leaves the queue, and the model is free for the next client (the lease used to stay taken for good,
    and every later request timed out with 503)."""
    ws = tmp_path / "ws"
    model = script(ws / "models" / "m", "m")
    app = standin_app(ws, model, queue_timeout_s=5)
    with running(app) as url:
        pool = app.state.pool
        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=30,
                          json={"messages": [{"role": "user", "content": "<<hang>>"}], "stream": True}) as held:
            assert held.status_code == 200
            wait_for(lambda: pool.current.lock.locked(), what="the model held")
            try:
                httpx.post(f"{url}/v1/chat/completions", json={"messages": ASK, "stream": True},
                           timeout=httpx.Timeout(30, read=0.5))
                raise AssertionError("the queued stream request was answered while the model was held")
            except httpx.ReadTimeout:
                pass
            wait_for(lambda: pool.waiting == 0, 10, "the queued request leaving the queue")
        after = httpx.post(f"{url}/v1/chat/completions", json={"messages": ASK, "max_tokens": 2}, timeout=30)
        assert after.status_code == 200, after.text
        wait_for(lambda: not pool.current.lock.locked(), 5, "the model free again")
        assert pool.current.pending == {}
        assert not [e for e in events(model) if e.startswith("overlap")]
