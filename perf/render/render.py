#!/usr/bin/env python3
"""Render ferrelay benchmark and load results into one self-contained HTML report.

Inputs are JSON files of two kinds, told apart by their keys:
  * benchmark results (`perf/results/*.json`, written by bench/src/e2e/summary.rs):
    `summary` + `runs` per forwarder (CPU per packet, latency percentiles, loss);
  * load reports (`ferrelay-load --json`): `latency` + `per_call`.

Plots are drawn with matplotlib as SVG and inlined, so the report opens offline.
Usage: render.py -o perf/reports/report.html perf/results/*.json [load.json ...]
"""

import argparse
import html
import io
import json
import os
import sys

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({
    "figure.dpi": 96, "font.size": 10, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False,
    "svg.fonttype": "none", "svg.hashsalt": "ferrelay",  # stable output
})
COLORS = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#d62728", "#17becf", "#8c564b"]


def svg(fig):
    """The figure as an inline <svg> element (no XML prologue)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def cpu_per_packet(res):
    """Stacked user/kernel µs per forwarded packet by relay, with on-CPU marks."""
    s = res["summary"]
    names = [x["forwarder"] for x in s]
    user = [x["user_us_per_pkt"] for x in s]
    sys_ = [x["sys_us_per_pkt"] for x in s]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(names, user, color=COLORS[0], label="user")
    ax.bar(names, sys_, bottom=user, color=COLORS[2], label="kernel")
    ax.scatter(names, [x["oncpu_us_per_pkt"] for x in s], color="black", marker="_",
               s=400, zorder=3, label="on-CPU (schedstat)")
    # Each round's total, so the spread is visible next to the median.
    for i, n in enumerate(names):
        rs = [r["total_us_per_pkt"] for r in res["runs"] if r["forwarder"] == n]
        ax.scatter([i] * len(rs), rs, color="#555", s=10, zorder=4)
    ax.set_ylabel("CPU µs per forwarded packet")
    ax.set_title("CPU per packet by relay (median of rounds; dots: each round)")
    ax.legend(loc="lower right", fontsize=8)
    return svg(fig)


def latency_percentiles(names, rows, title):
    """p50/p99/p99.9/max per relay on a log axis (rows: list of dicts with *_us)."""
    qs = [("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"), ("max_us", "max")]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, (name, row) in enumerate(zip(names, rows)):
        xs = [lab for k, lab in qs if row.get(k) is not None]
        ys = [row[k] for k, _ in qs if row.get(k) is not None]
        ax.plot(xs, ys, marker="o", color=COLORS[i % len(COLORS)], label=name)
    ax.set_yscale("log")
    ax.set_ylabel("one-way latency through the relay (µs)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return svg(fig)


def bench_latency(res):
    """Per relay: the median over rounds of each percentile."""
    names, rows = [], []
    for x in res["summary"]:
        runs = [r for r in res["runs"] if r["forwarder"] == x["forwarder"]]
        row = {}
        for k in ("p50_us", "p99_us", "p999_us", "max_us"):
            v = sorted(r[k] for r in runs if r.get(k) is not None)
            if v:
                row[k] = v[len(v) // 2]
        names.append(x["forwarder"])
        rows.append(row)
    return latency_percentiles(names, rows, "Latency percentiles (median of rounds)")


def scaling(res):
    """Forwarded pps and CPU per packet by worker count, when runs record it."""
    runs = [r for r in res["runs"] if r.get("workers") is not None]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, n in enumerate(sorted({r["forwarder"] for r in runs})):
        pts = sorted((r["workers"], r["forwarded_pps"]) for r in runs if r["forwarder"] == n)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                color=COLORS[i % len(COLORS)], label=n)
    ax.set_xlabel("workers")
    ax.set_ylabel("forwarded packets / s")
    ax.set_title("Scaling by worker count")
    ax.legend(fontsize=8)
    return svg(fig)


def bench_section(name, res):
    plan, m = res.get("plan", {}), res.get("machine", {})
    rows = "".join(
        f"<tr><td>{html.escape(x['forwarder'])}</td><td>{x['forwarded_pps']:.0f}</td>"
        f"<td>{x['total_us_per_pkt']:.2f}</td><td>{x['oncpu_us_per_pkt']:.2f}</td>"
        f"<td>{x['core_util_pct']:.1f}</td><td>{x['loss_pct']:.3f}</td>"
        f"<td>{x['p50_us']:.1f}</td><td>{x['p99_us']:.1f}</td></tr>"
        for x in res["summary"])
    ratios = "".join(
        f"<li>{html.escape(r['numerator'])} / {html.escape(r['denominator'])} "
        f"({html.escape(r['metric'])}): {r['median']:.2f}× ({r['median_diff_us']:+.2f} µs)</li>"
        for r in res.get("ratios") or [])
    parts = [
        f"<h2>{html.escape(res.get('title') or name)}</h2>",
        f"<p class='meta'>{html.escape(res.get('date', ''))} · {html.escape(m.get('cpu', ''))}, "
        f"{m.get('cores', '?')} cores, kernel {html.escape(m.get('kernel', ''))} · "
        f"{plan.get('calls', '?')} calls × {plan.get('pps_per_direction', '?')} pps × 2 directions, "
        f"{plan.get('packet_len', '?')}-byte packets, {plan.get('rounds', '?')} rounds · "
        f"<code>{html.escape(res.get('command', ''))}</code></p>",
        "<table><tr><th>relay</th><th>forwarded pps</th><th>CPU µs/pkt</th>"
        "<th>on-CPU µs/pkt</th><th>core %</th><th>loss %</th><th>p50 µs</th><th>p99 µs</th></tr>"
        f"{rows}</table>",
        f"<ul>{ratios}</ul>" if ratios else "",
        "<div class='plots'>", cpu_per_packet(res), bench_latency(res),
    ]
    sc = scaling(res)
    if sc:
        parts.append(sc)
    parts.append("</div>")
    return "\n".join(parts)


def load_section(name, rep):
    lat = rep["latency"]
    per_call = rep.get("per_call") or []
    parts = [
        f"<h2>Load report: {html.escape(name)}</h2>",
        f"<p class='meta'>{rep['calls']} calls × {rep['pps_per_direction']} pps, "
        f"{rep['duration_s']:.0f} s · sent {rep['sent']}, received {rep['received']}, "
        f"lost {rep['lost']} ({rep['loss_pct']:.3f} %) · latency samples {lat['samples']}</p>",
        "<div class='plots'>",
        latency_percentiles([name], [lat], "Latency percentiles"),
    ]
    if per_call:
        loss = [c["a_to_b"]["lost"] + c["b_to_a"]["lost"] for c in per_call]
        jit = [max(c["a_to_b"]["jitter_us"], c["b_to_a"]["jitter_us"]) for c in per_call]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(7, 3))
        a1.hist(loss, bins=min(30, max(1, len(set(loss)))), color=COLORS[4])
        a1.set_title("packets lost per call")
        a2.hist(jit, bins=30, color=COLORS[0])
        a2.set_title("RFC 3550 jitter per call (µs)")
        parts.append(svg(fig))
    parts.append("</div>")
    return "\n".join(parts)


CSS = """body{font:14px/1.45 'DejaVu Sans',Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
.meta{color:#555}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f6f8}
td:first-child{text-align:left}.plots svg{max-width:100%;height:auto;margin:6px 0}
code{font-size:12px}"""


def render(paths):
    sections = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            d = json.load(f)
        name = os.path.splitext(os.path.basename(p))[0]
        if "summary" in d and "runs" in d:
            sections.append(bench_section(name, d))
        elif "latency" in d and "per_call" in d:
            sections.append(load_section(name, d))
        else:
            raise SystemExit(f"{p}: neither a benchmark result nor a ferrelay-load report")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>ferrelay performance report</title><style>{CSS}</style></head><body>"
            "<h1>ferrelay performance report</h1>"
            f"<p class='meta'>Rendered by perf/render/render.py from: "
            f"{html.escape(', '.join(os.path.basename(p) for p in paths))}</p>"
            + "\n".join(sections) + "</body></html>\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True, help="HTML file to write")
    ap.add_argument("inputs", nargs="+", help="result JSON files")
    a = ap.parse_args()
    out = render(a.inputs)
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    with open(a.output, "w", encoding="utf-8") as f:
        f.write(out)
    print(f"wrote {a.output} ({len(out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
