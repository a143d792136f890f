"""Shows one example: where it came from, its tags and status, and each turn rendered as markdown. A preference
pair's answers sit side by side under its prompt, "chosen" left and "rejected" right; a KTO-labelled example says
its label in the header and on its answer."""

from __future__ import annotations

from rich.console import Group
from rich.markdown import Markdown
from rich.panel import Panel
from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.strip import Strip
from textual.visual import RichVisual
from textual.widgets import Static

from forge.store import Example

ROLE_STYLE = {"system": "magenta", "user": "cyan", "assistant": "green"}
STATUS_STYLE = {"pending": "yellow", "approved": "bold green", "rejected": "bold red"}


def render_example(ex: Example, position: str = "", provenance: str = "") -> Group:
    head = Text()
    head.append(f"#{ex.id} ", style="bold")
    head.append(ex.status.upper(), style=STATUS_STYLE[ex.status])
    if ex.edited:
        head.append("  edited", style="italic cyan")
    if ex.reason:
        head.append(f"  ({ex.reason})", style="dim")
    pair = ex.rejected is not None and bool(ex.messages) and ex.messages[-1]["role"] == "assistant"
    label = ex.label
    if pair:
        head.append("  ⇄ preference pair", style="bold magenta")
    elif label is not None:
        head.append("  KTO " + ("desirable" if label else "undesirable"), style="bold green" if label else "bold red")
    if position:
        head.append(f"   {position}", style="dim")
    where = ex.source
    if ex.line and ex.source_kind == "obsidian":
        where = f"{ex.note_path}:{ex.line}" + (f"  § {ex.heading}" if ex.heading else "")
    meta = Text(f"source {where}", style="dim")
    tags = Text("tags " + (" ".join(f"#{t}" for t in ex.tags) if ex.tags else "—"), style="dim")
    lines = [head, meta, tags] + ([Text(provenance, style="italic cyan")] if provenance else [])
    shown = ex.messages[:-1] if pair else ex.messages
    turns = [_turn(m["content"], m["role"], ROLE_STYLE.get(m["role"], "white")) for m in shown]
    if pair:
        sides = Table.grid(expand=True, padding=(0, 1))
        sides.add_column(ratio=1)
        sides.add_column(ratio=1)
        sides.add_row(_turn(ex.messages[-1]["content"], "chosen", "green"), _turn(ex.rejected, "rejected", "red"))
        turns.append(sides)
    elif label is not None and turns and ex.messages[-1]["role"] == "assistant":
        turns[-1] = _turn(ex.messages[-1]["content"], "assistant · " + ("desirable" if label else "undesirable"),
                          "green" if label else "red")
    return Group(*lines, Text(""), *turns)


def _turn(content: str, title: str, style: str) -> Panel:
    return Panel(Markdown(content or "*(empty)*"), title=title, title_align="left", border_style=style)


class RenderedOnce(RichVisual):
    """A rich renderable that is rendered once per width and style. Textual renders a rich renderable to measure
    its height and again to paint it: each key press rendered the example's markdown three times."""

    def __init__(self, widget, renderable) -> None:
        super().__init__(widget, renderable)
        self._cached: tuple[tuple, list[Strip]] | None = None

    def _lines(self, width: int, rich_style) -> list[Strip]:
        key = (width, rich_style)
        if self._cached is None or self._cached[0] != key:
            app = self._widget.app
            options = app.console_options.update(highlight=False, width=width)
            segments = app.console.render(self._widget.post_render(self._renderable, rich_style), options)
            lines = Segment.split_and_crop_lines(segments, width, include_new_lines=False, pad=False)
            self._cached = (key, [Strip(line) for line in lines])
        return self._cached[1]

    def get_height(self, rules, width: int) -> int:
        return len(self._lines(width, self._widget.visual_style.rich_style))

    def __rich_console__(self, console, options):
        yield self._renderable  # printed by rich (a Static's `content`) as what it wraps

    def render_strips(self, width, height, style, options) -> list[Strip]:
        lines = self._lines(width, style.rich_style)
        return lines[:height] if height is not None else list(lines)


class ExampleView(VerticalScroll):
    """Scrollable view of the current example. The screen sets `show(example)`; it reports nothing upward."""

    def compose(self):
        yield Static(id="example-body")

    def show(self, ex: Example | None, position: str = "", empty_message: str = "", provenance: str = "") -> None:
        """`provenance`: one line saying who wrote the prompt, for an example whose prompt an LLM wrote."""
        body = self.query_one("#example-body", Static)
        if ex is None:
            body.update(Text(empty_message or "No examples here.", style="dim italic"))
        else:
            body.update(RenderedOnce(body, render_example(ex, position, provenance)))
        self.scroll_home(animate=False)
