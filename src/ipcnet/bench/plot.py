"""``--plot FILE``: results as bar charts (PNG or SVG), one panel per unit, one group per
case, medians with range bars and ipcnet / peer above each peer's bar; matplotlib lazily.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from ipcnet.bench.harness import Result, ratios


def plot(results: Sequence[Result], path: str, title: str) -> None:
    import matplotlib  # --plot's type (harness._chart) checked the name, the folder and this

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    shown = [(r, q) for r, q in zip(results, ratios(results), strict=True) if r.samples]
    units = list(dict.fromkeys(r.unit for r, _ in shown)) or ["-"]
    peers = sorted(
        dict.fromkeys(r.peer for r, _ in shown), key=lambda p: not p.startswith("ipcnet")
    )
    colours = {p: f"C{i % 10}" for i, p in enumerate(peers)}
    fig, axes = plt.subplots(len(units), 1, figsize=(6.4, 0.6 + 2.2 * len(units)), squeeze=False)
    for ax, unit in zip(axes[:, 0], units, strict=True):
        _panel(ax, [(r, q) for r, q in shown if r.unit == unit], colours)
        ax.set_ylabel(unit)
    handles = [Rectangle((0, 0), 1, 1, color=colours[p]) for p in peers]
    fig.legend(handles, peers, fontsize=6, ncol=min(len(peers), 3), loc="lower center")
    fig.suptitle(title + "  (median and range; labels: ipcnet / peer)", fontsize=9)
    rows = (len(peers) + 2) // 3
    fig.tight_layout(rect=(0, (0.1 + 0.18 * rows) / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _panel(ax: Any, rows: list[tuple[Result, float | None]], colours: dict[str, str]) -> None:
    """One unit's cases: the peers that ran each case side by side, centred on it."""
    cases = list(dict.fromkeys(r.case for r, _ in rows))
    for i, case in enumerate(cases):
        group = sorted(((r, q) for r, q in rows if r.case == case), key=lambda rq: not rq[0].ours)
        width = 0.8 / len(group)
        for j, (r, q) in enumerate(group):
            med = r.median or 0.0
            x = i + (j - (len(group) - 1) / 2) * width
            err = [[med - min(r.samples)], [max(r.samples) - med]]
            bar = ax.bar([x], [med], width, yerr=err, capsize=2, color=colours[r.peer])
            ax.bar_label(bar, ["" if q is None else f"{q:.2f}x"], fontsize=6, padding=2)
    labels = [textwrap.fill(c, 18) for c in cases]
    ax.set_xticks(range(len(cases)), labels, fontsize=6 if len(cases) > 4 else 7)
    meds = [r.median or 0.0 for r, _ in rows]
    if meds and max(meds) > 30 * max(min(meds), 1e-9):
        ax.set_yscale("log")
