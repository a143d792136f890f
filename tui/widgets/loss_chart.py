"""Train and eval loss against step, drawn with plotext; for a preference run (DPO / KTO) also the reward margin
and the chosen / rejected rewards, on a right-hand axis of their own (rewards are not in loss units). The screen
feeds points and decides when to redraw."""

from __future__ import annotations

from textual_plotext import PlotextPlot

REWARD_SERIES = [  # (event key, legend, marker): the margin first, drawn the most visibly
    ("rewards_margin", "reward margin", "braille"),
    ("rewards_chosen", "chosen reward", "dot"),
    ("rewards_rejected", "rejected reward", "dot"),
]


class LossChart(PlotextPlot):
    def on_mount(self) -> None:
        self.train_points: list[tuple[int, float]] = []
        self.eval_points: list[tuple[int, float]] = []
        self.reward_points: dict[str, list[tuple[int, float]]] = {}
        self.draw()

    def set_points(self, train: list[tuple[int, float]], evals: list[tuple[int, float]],
                   rewards: dict[str, list[tuple[int, float]]] | None = None) -> None:
        self.train_points, self.eval_points = train, evals
        self.reward_points = {k: v for k, v in (rewards or {}).items() if v}
        self.draw()

    @property
    def legend(self) -> list[str]:
        """The series drawn now, as their legend reads."""
        shown = [("train", self.train_points), ("eval", self.eval_points)]
        shown += [(label, self.reward_points.get(key)) for key, label, _ in REWARD_SERIES]
        return [label for label, points in shown if points]

    def draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        rewards = [(key, label, marker) for key, label, marker in REWARD_SERIES if self.reward_points.get(key)]
        plt.title("loss · rewards (right axis)" if rewards else "loss")
        plt.xlabel("step")
        if self.train_points:
            plt.plot([s for s, _ in self.train_points], [v for _, v in self.train_points], label="train",
                     marker="braille")
        if self.eval_points:
            plt.plot([s for s, _ in self.eval_points], [v for _, v in self.eval_points], label="eval",
                     marker="dot")
        for key, label, marker in rewards:
            points = self.reward_points[key]
            plt.plot([s for s, _ in points], [v for _, v in points], label=label, marker=marker, yside="right")
        self.refresh()
