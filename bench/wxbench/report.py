"""The console table, bench/results/<scenario>.json, history.jsonl and bench/RESULTS.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from wxbench.procs import BENCH, REPO

RESULTS_DIR = BENCH / "results"
RESULTS_MD = BENCH / "RESULTS.md"
HISTORY = RESULTS_DIR / "history.jsonl"
NOTES = RESULTS_DIR / "notes.md"
ORDER = ("SIM", "P1", "P2", "P3", "P4", "P5", "P6")


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        rev, dirty = "?", ""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg()[0],
        "git": rev + ("+uncommitted" if dirty else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit in ("ms", "MB", "MB/min"):
        return f"{v:,.1f}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def _us(v: float) -> str:
    return f"{v / 1000:,.2f} ms" if v >= 1000 else f"{v:,.2f} us"


def _cell(s: dict[str, Any] | None, unit: str) -> str:
    if not s or s.get("median") is None:
        return "-"
    if s["min"] == s["max"]:
        return fmt(s["median"], unit)
    return f"{fmt(s['median'], unit)} ({fmt(s['min'], unit)}-{fmt(s['max'], unit)})"


def _met(m: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "-"}[m]


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}"


def console_table(results: list[dict[str, Any]]) -> str:
    head = (
        "scen",
        "variant",
        "metric",
        "ours: median (min-max)",
        "baseline",
        "ratio",
        "target",
        "met",
    )
    rows = [head]
    for res in results:
        for r in res.get("rows", []):
            rows.append(
                (
                    res["scenario"],
                    r["name"],
                    f"{r['metric']} [{r['unit']}]",
                    _cell(r["ours"], r["unit"]),
                    f"{r['baseline_name'] or '-'}: {_cell(r['baseline'], r['unit'])}"
                    if r["baseline"]
                    else "-",
                    _ratio(r["ratio"]),
                    r["target"],
                    _met(r["met"]),
                )
            )
        for s in res.get("skipped", []):
            rows.append((res["scenario"], "SKIPPED", s, "", "", "", "", ""))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save(result: dict[str, Any], info: dict[str, Any]) -> None:
    """Latest result per scenario as JSON, and one line of history."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    result = {**result, "machine": info}
    (RESULTS_DIR / f"{result['scenario']}.json").write_text(json.dumps(result, indent=1))
    line = {
        "date": info["date"],
        "git": info["git"],
        "mode": result["mode"],
        "load": round(info["loadavg_at_start"], 2),
        "scenario": result["scenario"],
        "rows": [
            {
                "name": r["name"],
                "metric": r["metric"],
                "ours": r["ours"]["median"],
                "baseline": r["baseline"]["median"] if r["baseline"] else None,
                "ratio": r["ratio"],
                "met": r["met"],
            }
            for r in result.get("rows", [])
        ],
    }
    with HISTORY.open("a") as f:
        f.write(json.dumps(line) + "\n")


def _load_all() -> list[dict[str, Any]]:
    out = []
    for name in ORDER:
        p = RESULTS_DIR / f"{name}.json"
        if p.exists():
            out.append(json.loads(p.read_text()))
    return out


def _history_line(h: dict[str, Any]) -> str:
    parts = []
    for r in h["rows"]:
        if r["met"] is None and r["ratio"] is None:
            continue
        ratio = f" x{r['ratio']:.2f}" if r["ratio"] is not None else ""
        mark = {True: " ok", False: " MISS", None: ""}[r["met"]]
        parts.append(f"{r['name']} {r['metric']} {fmt(r['ours'])}{ratio}{mark}")
    return (
        f"| {h['date']} | {h['git']} | {h['mode']} | {h['load']} | {h['scenario']} | "
        f"{'; '.join(parts)} |"
    )


def _profile_md(p: dict[str, Any], label: str = "") -> list[str]:
    if not p or "self" not in p:
        return [f"Profile {label}: {p.get('error', 'none') if p else 'none'}", ""]
    rate = p.get("rate_while_profiled")
    lines = [
        f"**py-spy profile of the gateway{(' ' + label) if label else ''}** "
        f"({p.get('variant', '')}; {p['samples']:,} samples at 250 Hz, all threads, "
        f"idle excluded{f'; {rate:,.0f}/s while profiled' if rate else ''}; raw: "
        f"`{p.get('raw', '')}`)",
        "",
        "| self time: where the CPU is | % | | inclusive (function and callees) | % |",
        "|---|---:|---|---|---:|",
    ]
    selfs, incl = p["self"][:12], p["inclusive"][:12]
    for i in range(max(len(selfs), len(incl))):
        a = selfs[i] if i < len(selfs) else None
        b = incl[i] if i < len(incl) else None
        lines.append(
            f"| {('`' + a['frame'] + '`') if a else ''} | {a['pct'] if a else ''} | | "
            f"{('`' + b['frame'] + '`') if b else ''} | {b['pct'] if b else ''} |"
        )
    areas = ", ".join(f"{a['frame']} {a['pct']}%" for a in p.get("self_by_area", []))
    threads = ", ".join(f"{a['frame']} {a['pct']}%" for a in p.get("threads", []))
    lines += ["", f"Self time by area: {areas}.", "", f"By thread: {threads}.", ""]
    return lines


def _details_md(res: dict[str, Any]) -> list[str]:
    """Median CPU share per process and anything odd (errors, non-2xx), per variant."""
    lines = []
    for key, runs in res.get("details", {}).items():
        label = res.get("variants", {}).get(key, key)
        errs = [r["error"] for r in runs if "error" in r]
        cpus: dict[str, list[float]] = {}
        for r in runs:
            cpu = r.get("cpu") or (r.get("wrk") or {}).get("cpu") or {}
            for name, share in cpu.items():
                cpus.setdefault(name, []).append(share)
        bits = []
        if cpus:
            med = {n: sorted(v)[len(v) // 2] for n, v in cpus.items()}
            bits.append(
                "CPU (cores busy, median): "
                + ", ".join(f"{n} {s:.2f}" for n, s in sorted(med.items()))
            )
        odd = [r.get("non_2xx") for r in runs if r.get("non_2xx")]
        if odd:
            bits.append(f"non-2xx answers: {odd}")
        for extra in (
            "time_wait_sockets",
            "missing",
            "queued",
            "delivered_while_sampled",
            "enqueue_s",
            "sim_delivered",
            "rss_first_mb",
            "rss_at_warmup_end_mb",
            "rss_end_mb",
            "ingest_p99_ms",
            "accept_to_sent_histogram",
            "load_lag_s",
        ):
            vals = [r[extra] for r in runs if r.get(extra) is not None]
            if vals:
                bits.append(f"{extra}: {vals}")
        if errs:
            bits.append(f"FAILED runs: {errs}")
        if bits:
            lines.append(f"- {label}: " + "; ".join(bits))
    return lines


def render() -> str:
    results = _load_all()
    out = [
        "# wxgate benchmark results",
        "",
        "Written by `bench/run.py` from the latest `bench/results/<scenario>.json`; do not edit "
        "by hand (the analysis comes from `bench/results/notes.md`). Every figure is the "
        "median of the runs with the min-max spread in brackets; every ratio is ours / the "
        "baseline measured in the same run on the same machine (runs interleaved); for "
        "throughput above 1 is better, for latency and memory above 1 means ours is higher. "
        "`bench/run.py --quick` is `make bench`; `--full` runs everything longer.",
        "",
    ]
    machines = {
        json.dumps({k: r["machine"].get(k) for k in ("cpus", "cpu_model", "python")})
        for r in results
        if "machine" in r
    }
    for m in sorted(machines):
        d = json.loads(m)
        out.append(f"Machine: {d['cpus']} CPUs ({d['cpu_model']}), Python {d['python']}.")
    out += [
        "",
        "## Summary",
        "",
        "| scenario | variant | metric | ours | baseline | ratio | target | met |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for res in results:
        for r in res.get("rows", []):
            base = (
                f"{r['baseline_name']}: {_cell(r['baseline'], r['unit'])}" if r["baseline"] else "-"
            )
            out.append(
                f"| {res['scenario']} | {r['name']} | {r['metric']} [{r['unit']}] | "
                f"{_cell(r['ours'], r['unit'])} | {base} | {_ratio(r['ratio'])} | "
                f"{r['target']} | {_met(r['met'])} |"
            )
    for res in results:
        m = res.get("machine", {})
        out += [
            "",
            f"## {res['scenario']}: {res['title']}",
            "",
            f"Reproduce: `{res['command']}` ({res['mode']} mode, {res['runs']} runs per "
            f"variant; measured {m.get('date', '?')}, git {m.get('git', '?')}, load average "
            f"{m.get('loadavg_at_start', 0):.2f} at the start).",
            "",
            "| variant | metric | ours: median (min-max) | baseline: median (min-max) | ratio "
            "| target | met |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for r in res.get("rows", []):
            base = (
                f"{r['baseline_name']}: {_cell(r['baseline'], r['unit'])}" if r["baseline"] else "-"
            )
            out.append(
                f"| {r['name']} | {r['metric']} [{r['unit']}] | {_cell(r['ours'], r['unit'])} "
                f"| {base} | {_ratio(r['ratio'])} | {r['target']} | **{_met(r['met'])}** |"
            )
        out.append("")
        for note in res.get("notes", []):
            out.append(f"- {note}")
        for s in res.get("skipped", []):
            out.append(f"- skipped: {s}")
        out += _details_md(res)
        plots = res.get("plots", [])
        if plots:
            out += ["", " ".join(f"[{Path(p).stem}]({p})" for p in plots), ""]
            out += [f"![{Path(p).stem}]({p})" for p in plots]
        prof = res.get("profile")
        if prof:
            out.append("")
            if "self" in prof or "error" in prof:
                out += _profile_md(prof)
            else:
                for label, p in prof.items():
                    out += _profile_md(p, label)
    micro = RESULTS_DIR / "micro.json"
    if micro.exists():
        data = json.loads(micro.read_text())
        m = data.get("machine", {})
        out += [
            "",
            "## Micro benchmarks (pytest-benchmark, bench/micro/)",
            "",
            f"Reproduce: `.venv/bin/python bench/run.py --micro` (measured {m.get('date', '?')}, "
            f"git {m.get('git', '?')}, load average {m.get('loadavg_at_start', 0):.2f}).",
            "",
            "| benchmark | median | min | per message (median) |",
            "|---|---:|---:|---:|",
        ]
        for b in data["benchmarks"]:
            per = b.get("extra", {}).get("per_message_us")
            out.append(
                f"| {b['group']}: `{b['name']}` | {_us(b['median_us'])} | {_us(b['min_us'])} | "
                f"{_us(per) if per is not None else '-'} |"
            )
    if NOTES.exists():
        out += ["", "## Analysis", "", NOTES.read_text().strip(), ""]
    if HISTORY.exists():
        out += [
            "",
            "## History (one line per scenario run)",
            "",
            "| date | git | mode | load | scenario | medians (x ratio to baseline) |",
            "|---|---|---|---|---|---|",
        ]
        for raw in HISTORY.read_text().splitlines()[-200:]:
            try:
                out.append(_history_line(json.loads(raw)))
            except (ValueError, KeyError):
                continue
    return "\n".join(out) + "\n"


def write_results_md() -> Path:
    RESULTS_MD.write_text(render())
    return RESULTS_MD
