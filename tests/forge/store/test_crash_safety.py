"""kill -9 during a burst of decisions: every decision acknowledged before the kill is there on restart."""

import json
import os
import signal
import subprocess
import sys
import textwrap

from forge.store import Store
from tests.conftest import REPO

BURST = textwrap.dedent("""
    import sys
    from forge.store import Store
    store = Store(sys.argv[1])
    ids = store.ids()
    i = 0
    while True:  # approve/reject/edit round and round until killed
        eid = ids[i % len(ids)]
        kind = i % 3
        if kind == 0:
            store.set_status(eid, "approved")
        elif kind == 1:
            store.set_status(eid, "rejected", reason=f"r{i}")
        else:
            store.edit(eid, [{"role": "user", "content": f"q{eid}"}, {"role": "assistant", "content": f"edit {i}"}])
        print(f"ACK {i} {eid}", flush=True)
        i += 1
""")


def test_kill_9_loses_no_acknowledged_decision(store):
    store.ingest([{"extract_key": f"k{i}", "source_kind": "jsonl", "source_ref": "x", "tags": [],
                   "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
                  for i in range(20)])
    proc = subprocess.Popen([sys.executable, "-c", BURST, str(store.path)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    acked = []
    for line in proc.stdout:
        acked.append(line.split())
        if len(acked) >= 300:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    reopened = Store(store.path)
    assert reopened.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n_decisions = reopened.conn.execute("SELECT count(*) FROM decisions").fetchone()[0]
    assert n_decisions >= len(acked)  # every acknowledged decision is in the log
    # The last acknowledged decision of each example is what the store shows (or a later, unacked one).
    last = {}
    for _, i, eid in acked:
        last[int(eid)] = int(i)
    logged = reopened.conn.execute("SELECT example_ids, after FROM decisions ORDER BY id").fetchall()
    for eid, i in last.items():
        states = [json.loads(a)[str(eid)] for ids, a in logged if eid in json.loads(ids)]
        kind = i % 3
        expected = ({"status": "approved"} if kind == 0 else {"status": "rejected", "reason": f"r{i}"}
                    if kind == 1 else {"messages": [{"role": "user", "content": f"q{eid}"},
                                                    {"role": "assistant", "content": f"edit {i}"}]})
        assert any(all(s.get(k) == v for k, v in expected.items()) for s in states), (eid, i)
    reopened.close()
