"""``--plot FILE``: any benchmark's results as one grouped bar chart (PNG or SVG).

One group per case, one bar per peer with ipcnet first, each bar its median with the range
over rounds as an error bar and, above each peer's bar, ipcnet / peer (>1: ipcnet better).
matplotlib comes with the ``bench`` extra and is imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ipcnet.bench.harness import Result, ratios


def plot(results: Sequence[Result], path: str, title: str) -> None:
    if Path(path).suffix.lower() not in (".png", ".svg"):
        raise SystemExit(f"--plot {path}: the file name must end in .png or .svg")
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - the bench extra has it
        raise SystemExit("--plot: matplotlib is missing (pip install ipcnet[bench])") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.samples]
    cases = list(dict.fromkeys(r.case for r in shown))
    peers = sorted(dict.fromkeys(r.peer for r in shown), key=lambda p: not p.startswith("ipcnet"))
    width = 0.8 / max(len(peers), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(cases) * len(peers) + 2), 3.6))
    for j, peer in enumerate(peers):
        xs: list[float] = []
        meds: list[float] = []
        errs: list[list[float]] = [[], []]
        labels: list[str] = []
        for r, q in zip(shown, ratios(shown), strict=True):
            if r.peer != peer:
                continue
            med = r.median or 0.0
            xs.append(cases.index(r.case) + (j - (len(peers) - 1) / 2) * width)
            meds.append(med)
            errs[0].append(med - min(r.samples))
            errs[1].append(max(r.samples) - med)
            labels.append("" if q is None else f"{q:.2f}x")
        bars = ax.bar(xs, meds, width, yerr=errs, capsize=2, label=peer)
        ax.bar_label(bars, labels, fontsize=6, padding=2)
    units = sorted({r.unit for r in shown})
    ax.set_ylabel(", ".join(units))
    ax.set_xticks(range(len(cases)), cases, rotation=20 if len(cases) > 4 else 0, fontsize=7)
    if shown and max(r.median or 0 for r in shown) > 100 * max(
        min(r.median or 1 for r in shown), 1e-9
    ):
        ax.set_yscale("log")
    ax.set_title(title + "  (median, range; labels: ipcnet / peer)", fontsize=9)
    ax.legend(fontsize=7, ncol=min(len(peers), 4))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
