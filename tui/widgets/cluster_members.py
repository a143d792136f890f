"""Members of one near-duplicate cluster side by side, words that differ from the kept one highlighted."""

from __future__ import annotations

import difflib

from rich.console import Group
from rich.panel import Panel
from rich.text import Text
from textual.containers import HorizontalScroll
from textual.widgets import Static

from forge.store import Example

STATUS_STYLE = {"pending": "yellow", "approved": "bold green", "rejected": "bold red"}


def diff_text(reference: str, other: str) -> Text:
    """`other`, with the words that are not in `reference` (at that place) highlighted."""
    ref_words, words = reference.split(" "), other.split(" ")
    out = Text()
    matcher = difflib.SequenceMatcher(a=ref_words, b=words, autojunk=False)
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        chunk = " ".join(words[j1:j2])
        if not chunk:
            continue
        if out:
            out.append(" ")
        out.append(chunk, style=None if tag == "equal" else "black on yellow")
    return out


def member_panel(ex: Example, reference: Example, selected: bool, keep: bool) -> Panel:
    body = []
    for m, ref in zip(ex.messages, reference.messages + [None] * len(ex.messages)):
        body.append(Text(m["role"], style="bold cyan" if m["role"] == "user" else "bold green"))
        body.append(diff_text(ref["content"], m["content"]) if ref and ex.id != reference.id else Text(m["content"]))
    title = Text(f"#{ex.id} ")
    title.append(ex.status, style=STATUS_STYLE[ex.status])
    if ex.edited:
        title.append(" edited", style="cyan")
    if keep:
        title.append("  ★ keep", style="bold magenta")
    return Panel(Group(*body), title=title, title_align="left",
                 border_style="bold magenta" if selected else "grey50")


class ClusterMembers(HorizontalScroll):
    """The screen sets `show(...)`; it reports nothing upward."""

    def show(self, members: list[Example], keep_id: int | None, selected: int) -> None:
        self.remove_children()
        if not members:
            self.mount(Static(Text("No cluster selected.", style="dim italic")))
            return
        reference = next((m for m in members if m.id == keep_id), members[0])
        for i, ex in enumerate(members):
            self.mount(Static(member_panel(ex, reference, i == selected, ex.id == keep_id), classes="member"))
