"""Train and eval loss against step, drawn with plotext. The screen feeds points and decides when to redraw."""

from __future__ import annotations

from textual_plotext import PlotextPlot


class LossChart(PlotextPlot):
    def on_mount(self) -> None:
        self.train_points: list[tuple[int, float]] = []
        self.eval_points: list[tuple[int, float]] = []
        self.draw()

    def set_points(self, train: list[tuple[int, float]], evals: list[tuple[int, float]]) -> None:
        self.train_points, self.eval_points = train, evals
        self.draw()

    def draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss")
        plt.xlabel("step")
        if self.train_points:
            plt.plot([s for s, _ in self.train_points], [v for _, v in self.train_points], label="train",
                     marker="braille")
        if self.eval_points:
            plt.plot([s for s, _ in self.eval_points], [v for _, v in self.eval_points], label="eval",
                     marker="dot")
        self.refresh()
