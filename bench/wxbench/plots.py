"""Throughput over time and latency distribution per scenario (PNG in bench/plots/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wxbench.procs import BENCH

PLOTS = BENCH / "plots"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def make(result: dict[str, Any]) -> list[str]:
    """Write the scenario's PNGs; return their paths relative to bench/ (for RESULTS.md)."""
    try:
        plt = _plt()
    except ImportError:
        print("  (matplotlib is missing: pip install '.[bench]'; no plots)")
        return []
    PLOTS.mkdir(parents=True, exist_ok=True)
    scen = result["scenario"]
    labels = result.get("variants", {})
    series: dict[str, dict[str, Any]] = result.get("series", {})
    written: list[str] = []

    with_bins = {k: s for k, s in series.items() if s.get("bins")}
    if with_bins:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for key, s in with_bins.items():
            xs = [t for t, _ in s["bins"]]
            ys = [v for _, v in s["bins"]]
            ax.plot(xs, ys, label=labels.get(key, key), linewidth=1.2)
            if s.get("bins2"):
                ax.plot(
                    [t for t, _ in s["bins2"]],
                    [v for _, v in s["bins2"]],
                    linestyle="--",
                    linewidth=1.0,
                    label=f"{labels.get(key, key)} (simulator receipts)",
                )
        ax.set_xlabel("seconds into the measured run (median run)")
        ax.set_ylabel("per second")
        ax.set_title(f"{scen}: throughput over time")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = PLOTS / f"{scen}_throughput.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path.relative_to(BENCH)))

    with_cdf = {k: s for k, s in series.items() if s.get("cdf")}
    if with_cdf:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for key, s in with_cdf.items():
            ps = [p for p, _ in s["cdf"]]
            ms = [v for _, v in s["cdf"]]
            ax.plot(ms, ps, label=labels.get(key, key), linewidth=1.2)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("percentile")
        ax.set_title(f"{scen}: latency distribution (median run)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = PLOTS / f"{scen}_latency.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path.relative_to(BENCH)))

    with_rss = {k: s for k, s in series.items() if s.get("rss")}
    if with_rss:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for key, s in with_rss.items():
            ax.plot(
                [t for t, _ in s["rss"]],
                [m for _, m in s["rss"]],
                label=labels.get(key, key),
                linewidth=1.2,
            )
        ax.axhline(200, color="red", linestyle=":", linewidth=1, label="200 MB target")
        ax.set_xlabel("seconds")
        ax.set_ylabel("RSS (MB)")
        ax.set_title(f"{scen}: resident memory over time")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = PLOTS / f"{scen}_rss.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(str(path.relative_to(BENCH)))
    return written


def relative(p: Path) -> str:
    return str(p.relative_to(BENCH))
