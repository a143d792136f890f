"""Dedup mode driven by keys, on the real embedding model."""

from textual.widgets import OptionList

from tests.data.dedup_labelled import BASES, conversation, variants
from tui.app import make_app
from tui.screens.dedup import DedupScreen


def seed(store):
    convs = []
    for (u, a), _, (ru, ra) in BASES[:3]:
        _, eu, ea = next(v for v in variants(u, a) if v[0] == "small edit")
        convs += [conversation(u, a), conversation(eu, ea), conversation(ru, ra)]
    store.ingest([{"extract_key": f"t:{i}", "source_kind": "jsonl", "source_ref": f"t:{i}", "tags": [],
                   "messages": m} for i, m in enumerate(convs)])


async def test_keep_one_threshold_and_undo(store, config):
    seed(store)
    app = make_app(config, store)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("f3")
        screen = app.screen
        assert isinstance(screen, DedupScreen)
        await screen.workers.wait_for_complete()
        await pilot.pause()
        assert len(screen.clusters) == 3
        assert screen.query_one("#cluster-list", OptionList).option_count == 3
        first = screen.clusters[0]
        await pilot.press("l", "k")  # keep the second member of the first cluster
        kept = first.ids[1]
        assert store.get(kept).status == "pending"
        losers = [i for i in first.ids if i != kept]
        assert all(store.get(i).status == "rejected" for i in losers)
        assert store.get(losers[0]).reason == f"duplicate of {kept}"
        assert len(screen.clusters) == 2
        await pilot.press("u")
        assert all(store.get(i).status == "pending" for i in first.ids)
        assert len(screen.clusters) == 3
        kept_all = screen.clusters[0].ids
        await pilot.press("K")  # keep all: nothing is rejected, the cluster leaves the list, and stays out
        assert len(screen.clusters) == 2 and store.counts()["rejected"] == 0
        assert all(kept_all != c.ids for c in screen.clusters)
        await pilot.press("u")
        assert len(screen.clusters) == 3 and screen.clusters[0].ids == kept_all
        await pilot.press("K")
        from forge.data.dedup import find_duplicates

        assert kept_all not in [c.ids for c in find_duplicates(store, app.config).clusters]  # a later run too
        for _ in range(30):  # raising the threshold to 1.0 re-clusters without re-embedding
            await pilot.press("plus")
        assert screen.threshold == 1.0 and screen.clusters == []
        await pilot.press("f2")
        assert app.screen.counts["rejected"] == 0
