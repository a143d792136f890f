"""One line with the example counts by status and the active filter."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class CountsBar(Static):
    def show(self, counts: dict, filters: str, prefs: dict | None = None) -> None:
        t = Text()
        t.append(f" pending {counts.get('pending', 0)} ", style="black on yellow")
        t.append(f" approved {counts.get('approved', 0)} ", style="black on green")
        t.append(f" rejected {counts.get('rejected', 0)} ", style="white on red")
        t.append(f"  total {counts.get('total', 0)}", style="bold")
        if prefs and prefs.get("pairs_total"):  # preference pairs the person's edits, votes, imports, drafts made
            by = ", ".join(f"{k} {v}" for k, v in prefs["pairs"].items() if v)
            t.append(f"  ⇄ {prefs['pairs_total']} pair{'s' if prefs['pairs_total'] != 1 else ''} ({by})",
                     style="bold magenta")
        if filters:
            t.append(f"   filter: {filters}", style="italic")
        self.update(t, layout=False)  # one line high (app.tcss): new counts never move another widget
