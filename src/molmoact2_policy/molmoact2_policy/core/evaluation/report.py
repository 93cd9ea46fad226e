"""Evaluation report: ``results.json`` (every figure), ``report.md`` or ``report.html``, and PNG
plots (predicted vs executed joint trajectories, error vs horizon step, latency histogram,
Think's refresh fraction over time)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from .metrics import NS, OpenLoopMetrics

FORMATS = ("md", "html")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_all(metrics: OpenLoopMetrics, out: Path) -> list[str]:
    plt = _plt()
    files = []
    s = metrics.summary()
    # predicted vs executed trajectories
    if metrics.executed.items:
        t0 = metrics.executed.items[0][0]
        n = len(metrics.joints)
        cols = 2 if n > 4 else 1
        rows = int(np.ceil(n / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 1.8 * rows + 0.6), squeeze=False, sharex=True)
        et = np.array([(t - t0) / NS for t, _ in metrics.executed.items])
        eq = np.stack([q for _, q in metrics.executed.items])
        for j, name in enumerate(metrics.joints):
            ax = axes[j // cols][j % cols]
            ax.plot(et, eq[:, j], color="black", lw=1.2, label="executed")
            for k, (t, chunk) in enumerate(metrics.predicted.items):
                ts = (t - t0) / NS + np.arange(len(chunk)) * metrics.dt_ns / NS
                ax.plot(ts, chunk[:, j], color="tab:orange", lw=0.8, alpha=0.7, label="predicted chunks" if k == 0 else None)
            ax.set_ylabel(name, fontsize=8)
        axes[0][0].legend(fontsize=7, loc="upper right")
        for ax in axes[-1]:
            ax.set_xlabel("bag time (s)")
        fig.suptitle("Predicted chunks vs executed joint trajectories")
        fig.tight_layout()
        fig.savefig(out / "trajectories.png", dpi=90)
        plt.close(fig)
        files.append("trajectories.png")
    # error vs horizon step
    steps = [k for k, row in enumerate(s["mae_by_step"]) if row is not None]
    if steps:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        mae = np.array([s["mae_by_step"][k] for k in steps])
        rmse = np.array([s["rmse_by_step"][k] for k in steps])
        arm = [i for i in range(len(metrics.joints)) if i not in metrics.gripper_idx]
        if arm:
            ax.plot(steps, mae[:, arm].mean(1), marker="o", ms=3, label="MAE, arm joints (rad)")
            ax.plot(steps, rmse[:, arm].mean(1), marker="s", ms=3, label="RMSE, arm joints (rad)")
        if metrics.gripper_idx:
            ax.plot(steps, mae[:, metrics.gripper_idx].mean(1), ls="--", label="MAE, grippers (opening)")
        ax.set_xlabel("horizon step k (issued at t + k*dt, executed at t + (k+1)*dt)")
        ax.set_ylabel("error")
        ax.legend(fontsize=8)
        ax.set_title("Error vs horizon step")
        fig.tight_layout()
        fig.savefig(out / "error_vs_horizon.png", dpi=90)
        plt.close(fig)
        files.append("error_vs_horizon.png")
    # latency histogram
    if metrics.latencies:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        lat_ms = np.asarray(metrics.latencies) * 1e3
        ax.hist(lat_ms, bins=min(50, max(5, len(lat_ms) // 4)), color="tab:blue")
        for q, ls in ((50, "-"), (99, "--")):
            ax.axvline(np.percentile(lat_ms, q), color="k", ls=ls, lw=1, label=f"p{q} {np.percentile(lat_ms, q):.1f} ms")
        ax.set_xlabel("inference latency (ms)")
        ax.set_ylabel("observations")
        ax.legend(fontsize=8)
        ax.set_title("Latency distribution")
        fig.tight_layout()
        fig.savefig(out / "latency_hist.png", dpi=90)
        plt.close(fig)
        files.append("latency_hist.png")
    # Think refresh fraction over time
    if metrics.think.items:
        arr = np.asarray(metrics.think.items)
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.plot(arr[:, 0] - arr[0, 0], arr[:, 1], label="depth cells refreshed")
        ax.plot(arr[:, 0] - arr[0, 0], arr[:, 2], ls="--", label="scene cells changed (eq. 6)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("bag time (s)")
        ax.set_ylabel("fraction of cells")
        ax.legend(fontsize=8)
        ax.set_title("Think: depth refresh vs scene change")
        fig.tight_layout()
        fig.savefig(out / "refresh_fraction.png", dpi=90)
        plt.close(fig)
        files.append("refresh_fraction.png")
    return files


def _fmt(v, digits=4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(results: dict, plots: list[str]) -> str:
    m = results.get("metrics")
    c = results["circular"]
    lines = [
        "# Replay evaluation",
        "",
        f"- bag: `{results['bag']}`",
        f"- embodiment: `{results['embodiment']}`; topic map: `{results['topic_map']}`",
        f"- backend: {results['backend']['kind']} `{results['backend']['model_id']}` ({results['backend']['mode']}, norm tag `{results['backend']['norm_tag']}`)",
        f"- instruction: \"{results['instruction']}\"; seed {results['seed']}; policy rate {results['rate_hz']:g} Hz",
        "",
    ]
    if c["circular"]:
        lines += ["> **Circular comparison.** " + c["explanation"], ""]
    else:
        lines += [f"Ground truth: {c['explanation']}", ""]
    o = results["observations"]
    lines += ["## Observations", "", "| ticks | evaluated | incomplete | stale | no instruction | backend errors |",
              "|---|---|---|---|---|---|",
              f"| {o['ticks']} | {o['evaluated']} | {o['skipped_incomplete']} | {o['skipped_stale']} | {o['skipped_no_instruction']} | {o['backend_errors']} |", ""]
    if results.get("warning"):
        lines += [f"**{results['warning']}**", ""]
    if m:
        lines += ["## Open-loop error (wire units: rad, gripper opening 0..1)", "",
                  f"Chunks scored: {m['chunks_scored']} (not scorable, the bag ends first: {m['chunks_unscored']}).", "",
                  "| joint | MAE | RMSE |", "|---|---|---|"]
        for j in m["joints"]:
            lines.append(f"| {j} | {_fmt(m['mae_per_joint'][j])} | {_fmt(m['rmse_per_joint'][j])} |")
        lines += ["", "| step | samples | mean MAE | mean RMSE | gripper agreement |", "|---|---|---|---|---|"]
        for k in range(m["horizon_steps"]):
            mae, rmse = m["mae_by_step"][k], m["rmse_by_step"][k]
            ga = m["gripper_agreement_by_step"][k] if m["gripper_agreement_by_step"] else None
            lines.append(f"| {k} | {m['samples_by_step'][k]} | {_fmt(float(np.mean(mae)) if mae else None)} | "
                         f"{_fmt(float(np.mean(rmse)) if rmse else None)} | {_fmt(ga, 3)} |")
        lat = m["latency_s"]
        lines += ["", f"Gripper agreement (open/closed at 0.5): {_fmt(m['gripper_agreement'], 3)}", "",
                  "## Latency", "", "| count | mean | p50 | p90 | p99 | max |", "|---|---|---|---|---|---|",
                  "| {} | {} | {} | {} | {} | {} |".format(lat["count"], *[_fmt(lat[k] * 1e3 if lat[k] is not None else None, 1) + " ms"
                                                              for k in ("mean", "p50", "p90", "p99", "max")]), ""]
        if "think" in m:
            t = m["think"]
            lines += ["## Think: depth refresh vs scene change", "",
                      f"Mean fraction of depth cells refreshed {_fmt(t['mean_refresh_fraction'], 3)}; mean fraction of "
                      f"scene cells changed (eq. 6) {_fmt(t['mean_scene_change_fraction'], 3)}; correlation "
                      f"{_fmt(t['refresh_vs_change_correlation'], 3)} over {t['observations']} observations.", ""]
    b = results["broken_records"]
    lines += ["## Broken records", ""]
    if b["count"]:
        lines += [f"{b['count']} broken record(s); the rest was evaluated.", "", "| file | position | reason |", "|---|---|---|"]
        lines += [f"| {x['file']} | {x['position']} | {x['reason'].replace('|', '/')} |" for x in b["listed"]]
    else:
        lines.append("None.")
    lines += [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    tp = results["throughput"]
    lines += [f"Evaluated in {tp['wall_s']:.1f} s ({_fmt(tp['observations_per_s'], 2)} observations/s).", ""]
    return "\n".join(lines)


def to_html(md_text: str) -> str:
    """A small, dependency-free rendering of the report's Markdown (headings, tables, images)."""
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>Replay evaluation</title>",
           "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
           "td,th{border:1px solid #bbb;padding:2px 8px;font-size:90%}blockquote{background:#fee;padding:.5em}</style></head><body>"]
    rows: list[str] = []

    def flush_table():
        if rows:
            out.append("<table>" + "".join(rows) + "</table>")
            rows.clear()

    for line in md_text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            tag = "th" if not rows else "td"
            rows.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        flush_table()
        if line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1: -1]
            out.append(f"<p><img src='{html.escape(src)}' style='max-width:100%'></p>")
        elif line.startswith("> "):
            out.append(f"<blockquote>{html.escape(line[2:]).replace('**', '')}</blockquote>")
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    flush_table()
    out.append("</body></html>")
    return "\n".join(out)


def write_report(results: dict, metrics: OpenLoopMetrics | None, out_dir, fmt: str = "md", plots: bool = True) -> dict:
    if fmt not in FORMATS:
        raise ValueError(f"report format '{fmt}' must be one of {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = plot_all(metrics, out) if (plots and metrics is not None) else []
    results = dict(results, plots=files)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    md_text = markdown(results, files)
    if fmt == "md":
        (out / "report.md").write_text(md_text)
    else:
        (out / "report.html").write_text(to_html(md_text))
    return results
