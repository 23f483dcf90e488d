"""The report of ``sparkml-dist bench``: ``report.md`` (tables + PNG plots) and a self-contained ``report.html``
(the same tables, the plots inline as SVG), both built from ``results.json``'s records.

Tables, per family: each case beside each of its baselines (our seconds and quality, theirs, the speedup) with the
machine's measured parallel ceiling in the same row; with ``--workers``, speedup and scaling efficiency against
workers. Plots: quality against time per family, speedup against workers (ideal and measured-ceiling lines),
cost/loss/return curves, bytes communicated.
"""

from __future__ import annotations

import html
import io
import json
import os
import statistics
from collections import defaultdict

from sparkml_dist.bench import calibration as calib


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _size(size: dict) -> str:
    return ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in size.items())


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else None


def summarize(records: list[dict]) -> list[dict]:
    """One row per case, dataset, size and worker count: medians over the repeats that succeeded."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["case"], r["dataset"], json.dumps(r["size"], sort_keys=True), r["workers"])].append(r)
    rows = []
    for (case, dataset, size, workers), recs in groups.items():
        ok = [r for r in recs if r["status"] == "ok"]
        q = recs[0]["quality"]
        row = {"case": case, "family": recs[0]["family"], "dataset": dataset, "size": json.loads(size),
               "workers": workers, "quality": q, "higher_is_better": recs[0]["higher_is_better"],
               "repeats": len(recs), "ok": len(ok), "errors": [r["error"] for r in recs if r["status"] != "ok"],
               "calibration": recs[0].get("calibration") or {}}
        if ok:
            row["seconds"] = _median([r["seconds"] for r in ok])
            row["value"] = _median([r["metrics"].get(q) for r in ok])
            row["bytes"] = _median([r.get("bytes") for r in ok])
            names = sorted({b for r in ok for b in r["baselines"]})
            row["baselines"] = {b: {"seconds": _median([r["baselines"].get(b, {}).get("seconds") for r in ok]),
                                    "value": _median([r["baselines"].get(b, {}).get(q) for r in ok])}
                                for b in names}
            row["curves"] = ok[0].get("curves") or {}
        rows.append(row)
    return rows


def _ceiling_note(row: dict) -> str:
    w = row["workers"] or 2
    return calib.note(row["calibration"], w)


def _tables(results: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table of the report."""
    rows = summarize(results["records"])
    out = []
    for family in sorted({r["family"] for r in rows}):
        header = ["case", "dataset", "size", "workers", "ours s", "quality", "baseline", "baseline s",
                  "baseline quality", "speedup", "machine ceiling"]
        body = []
        for r in (r for r in rows if r["family"] == family):
            where = str(r["workers"]) if r["workers"] else "local"
            if "seconds" not in r:
                body.append([r["case"], r["dataset"], _size(r["size"]), where, "failed", "–", "–", "–", "–", "–",
                             _ceiling_note(r)])
                continue
            quality = f"{r['quality']} {_fmt(r['value'])}"
            for i, (name, b) in enumerate(r["baselines"].items() or [("–", {})]):
                speed = (b["seconds"] / r["seconds"]) if b.get("seconds") and r["seconds"] else None
                lead = [r["case"], r["dataset"], _size(r["size"]), where, _fmt(r["seconds"], 3), quality] if i == 0 \
                    else ["", "", "", "", "", ""]
                body.append(lead + [name, _fmt(b.get("seconds"), 3), _fmt(b.get("value")),
                                    f"{speed:.2f}x" if speed else "–", _ceiling_note(r)])
        out.append((family, header, body))
    scaling = _scaling(rows)
    if scaling:
        out.append(("scaling against workers", ["case", "dataset", "size", "workers", "seconds", "speedup vs 1",
                                                "efficiency", "machine ceiling"], scaling))
    failed = [r for r in results["records"] if r["status"] != "ok"]
    if failed:
        out.append(("failures", ["case", "workers", "repeat", "error"],
                    [[r["case"], str(r["workers"] or "local"), str(r["repeat"] + 1), r["error"]] for r in failed]))
    return out


def _scaling(rows: list[dict]) -> list[list[str]]:
    body = []
    by_case = defaultdict(dict)
    for r in rows:
        if r["workers"] and "seconds" in r:
            by_case[(r["case"], r["dataset"], json.dumps(r["size"], sort_keys=True))][r["workers"]] = r
    for (case, dataset, size), per in sorted(by_case.items()):
        if 1 not in per:
            continue
        base = per[1]["seconds"]
        for w, r in sorted(per.items()):
            speedup = base / r["seconds"]
            c = calib.ceiling(r["calibration"], w)
            body.append([case, dataset, _size(json.loads(size)), str(w), _fmt(r["seconds"], 3), f"{speedup:.2f}x",
                         f"{speedup / w:.2f}", f"{c:.2f}x" if c else "–"])
    return body


def _header_lines(results: dict) -> list[str]:
    m, c, v = results.get("machine") or {}, results.get("calibration") or {}, results.get("versions") or {}
    lines = [f"Suite **{results['suite']}**, seed {results['seed']}, {results['repeats']} repeat(s), "
             f"{len(results['cases'])} case(s), {len(results['records'])} record(s), {results['failed']} failed, "
             f"{results.get('seconds', 0):.0f} s.",
             f"Machine: {m.get('cpus')} CPUs, {m.get('platform')}; Spark {m.get('spark')} on `{m.get('master')}`"
             + ("" if m.get("native_blas", True) else " (no native BLAS: MLlib on Java BLAS, ~20% slower)")
             + "; " + ", ".join(f"{k} {val}" for k, val in v.items()) + "."]
    if c:
        lines.append(f"**Machine calibration** ({c.get('method')}): {c.get('summary')}. Every speedup below is read "
                     "against it: a ratio of a distributed run against one process cannot exceed this machine's "
                     "ceiling (the *machine ceiling* column: measured speedup of CPU-bound work / processes).")
    return lines


def _figures(results: dict):
    """(file stem, title, matplotlib figure) for every plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summarize(results["records"]) if "seconds" in r]
    figs = []
    for family in sorted({r["family"] for r in rows}):
        fam = [r for r in rows if r["family"] == family]
        fig, axes = plt.subplots(1, len({r["quality"] for r in fam}), figsize=(7, 4.2), squeeze=False)
        for ax, quality in zip(axes[0], sorted({r["quality"] for r in fam}), strict=True):
            for r in (r for r in fam if r["quality"] == quality):
                tag = f"{r['case'].split('/', 1)[1]}" + (f" w={r['workers']}" if r["workers"] else "")
                ax.scatter([r["seconds"]], [r["value"]], marker="o", s=40)
                ax.annotate(tag, (r["seconds"], r["value"]), fontsize=7)
                for name, b in r["baselines"].items():
                    if b.get("seconds") and b.get("value") is not None:
                        ax.scatter([b["seconds"]], [b["value"]], marker="x", color="gray")
                        ax.annotate(name, (b["seconds"], b["value"]), fontsize=7, color="gray")
            ax.set_xscale("log")
            ax.set_xlabel("seconds (median; x = baseline)")
            ax.set_ylabel(quality)
            ax.grid(True, alpha=0.3)
        fig.suptitle(f"{family}: quality against time")
        fig.tight_layout()
        figs.append((f"quality_time_{family}", f"{family}: quality against time", fig))
    scaled = defaultdict(dict)
    for r in rows:
        if r["workers"]:
            scaled[r["case"]][r["workers"]] = r
    scaled = {k: v for k, v in scaled.items() if 1 in v and len(v) > 1}
    if scaled:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        ws = sorted({w for per in scaled.values() for w in per})
        for case, per in sorted(scaled.items()):
            points = sorted(per.items())
            ax.plot([w for w, _ in points], [per[1]["seconds"] / r["seconds"] for _, r in points], marker="o",
                    label=case)
        ax.plot(ws, ws, "k--", label="ideal", alpha=0.5)
        cal = next(iter(scaled.values()))[1]["calibration"]
        ceil = [calib.ceiling(cal, w) for w in ws]
        if all(c is not None for c in ceil):
            ax.plot(ws, ceil, "r:", label="machine ceiling (calibration)")
        ax.set_xlabel("workers (1 core each)")
        ax.set_ylabel("speedup against 1 worker")
        ax.legend(fontsize=7)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        figs.append(("speedup_workers", "speedup against workers", fig))
    curved = [r for r in rows if any(r["curves"].values())]
    if curved:
        fig, axes = plt.subplots(len(curved), 1, figsize=(6, 2.0 * len(curved) + 0.5), squeeze=False)
        for ax, r in zip(axes[:, 0], curved, strict=True):
            for name, values in r["curves"].items():
                if values:
                    ax.plot(range(1, len(values) + 1), values, marker=".", label=name)
            ax.set_title(r["case"] + (f" (workers={r['workers']})" if r["workers"] else ""), fontsize=8)
            ax.legend(fontsize=7)
            ax.grid(True, alpha=0.3)
        axes[-1, 0].set_xlabel("iteration / round / pass")
        fig.tight_layout()
        figs.append(("curves", "cost / loss / return curves", fig))
    with_bytes = [r for r in rows if r.get("bytes")]
    if with_bytes:
        fig, ax = plt.subplots(figsize=(6, 0.35 * len(with_bytes) + 1.2))
        labels = [r["case"] + (f" w={r['workers']}" if r["workers"] else "") for r in with_bytes]
        ax.barh(labels, [r["bytes"] for r in with_bytes], color="#4477aa")
        ax.set_xscale("log")
        ax.set_xlabel("bytes communicated (median)")
        ax.invert_yaxis()
        fig.tight_layout()
        figs.append(("bytes", "bytes communicated", fig))
    return figs


def render_markdown(results: dict, directory: str) -> str:
    """``report.md``'s text; its PNG plots are written into ``directory``."""
    import matplotlib.pyplot as plt

    lines = ["# sparkml-dist benchmark report", "", *[line + "\n" for line in _header_lines(results)]]
    for title, header, body in _tables(results):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        lines.append("")
    lines += ["## plots", ""]
    for stem, title, fig in _figures(results):
        fig.savefig(os.path.join(directory, f"{stem}.png"), dpi=100)
        plt.close(fig)
        lines += [f"![{title}]({stem}.png)", ""]
    return "\n".join(lines)


def render_html(results: dict) -> str:
    """``report.html``: one file, no external references (plots inline as SVG)."""
    import matplotlib.pyplot as plt

    esc = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>sparkml-dist benchmark report</title><style>",
             "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#eee}"
             "tr.fail td{background:#fdd}.note{background:#ffe;padding:.6em;border:1px solid #dd9}",
             "</style></head><body><h1>sparkml-dist benchmark report</h1>"]
    for i, line in enumerate(_header_lines(results)):
        text = esc(line).replace("**", "")
        parts.append(f"<p class='note'>{text}</p>" if i == 2 else f"<p>{text}</p>")
    for title, header, body in _tables(results):
        parts.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        for row in body:
            cls = " class='fail'" if title == "failures" or "failed" in row else ""
            parts.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>plots</h2>")
    for stem, title, fig in _figures(results):
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        plt.close(fig)
        svg = buf.getvalue()
        svg = svg[svg.find("<svg"):]  # drop the XML prolog and DOCTYPE: inline SVG in HTML5
        parts.append(f"<h3 id='{esc(stem)}'>{esc(title)}</h3><div>{svg}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
