"""``sparkml-dist bench compare BASELINE.json NEW.json``: flag regressions between two bench runs.

Cases are matched by id, dataset, size and worker count, each side the median of its repeats. A regression is a case
that got slower by more than ``time_tolerance`` (a fraction), whose quality got worse by more than
``quality_tolerance`` (a fraction of the old value, in the case's own direction: accuracy down, cost up), that failed
where it had succeeded, or that is missing from the new run. The exit code is 1 when there is one. When the two runs
were calibrated on machines of different speed, the times are compared as given and the two calibrations are printed
beside them (the tool does not rescale: a slower machine is a reason to re-run, not to guess).
"""

from __future__ import annotations

import json
import sys

from sparkml_dist.bench.report import summarize

#: added to the quality tolerance: quality figures that are 0 (an exact match) may move by rounding
QUALITY_EPS = 1e-9


def load(path: str) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ValueError(f"bench compare: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"bench compare: {path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or "records" not in data:
        raise ValueError(f"bench compare: {path} is not a results.json of `sparkml-dist bench` (no 'records')")
    return data


def _key(row: dict) -> tuple:
    return row["case"], row["dataset"], json.dumps(row["size"], sort_keys=True), row["workers"]


def compare(old: dict, new: dict, time_tolerance: float = 0.25, quality_tolerance: float = 0.01) -> list[dict]:
    """One finding per case of ``old``: ``status`` is ``ok``, ``slower``, ``worse``, ``failed``, ``missing``
    (the last four are regressions), or ``new`` for a case only ``new`` has."""
    if time_tolerance < 0 or quality_tolerance < 0:
        raise ValueError("bench compare: tolerances must be >= 0")
    before = {_key(r): r for r in summarize(old["records"])}
    after = {_key(r): r for r in summarize(new["records"])}
    findings = []
    for key, a in before.items():
        b = after.get(key)
        f = {"case": a["case"], "dataset": a["dataset"], "size": a["size"], "workers": a["workers"],
             "quality": a["quality"], "old_seconds": a.get("seconds"), "old_value": a.get("value")}
        if "seconds" not in a:
            f["status"] = "ok" if b is None or "seconds" not in b else "fixed"
            findings.append(f)
            continue
        if b is None:
            findings.append({**f, "status": "missing"})
            continue
        if "seconds" not in b:
            findings.append({**f, "status": "failed", "error": (b["errors"] or ["?"])[0]})
            continue
        f.update(new_seconds=b["seconds"], new_value=b["value"], time_ratio=b["seconds"] / a["seconds"])
        worse = (a["value"] - b["value"]) if a["higher_is_better"] else (b["value"] - a["value"])
        f["quality_change"] = -worse
        if worse > quality_tolerance * abs(a["value"]) + QUALITY_EPS:
            f["status"] = "worse"
        elif f["time_ratio"] > 1 + time_tolerance:
            f["status"] = "slower"
        else:
            f["status"] = "ok"
        findings.append(f)
    findings += [{"case": b["case"], "dataset": b["dataset"], "size": b["size"], "workers": b["workers"],
                  "quality": b["quality"], "status": "new"} for key, b in after.items() if key not in before]
    return findings


REGRESSIONS = ("slower", "worse", "failed", "missing")


def main(files: list[str], time_tolerance: float = 0.25, quality_tolerance: float = 0.01) -> int:
    """Print the comparison table; 1 when a case regressed, else 0."""
    if len(files) != 2:
        raise ValueError(f"bench compare: expected two results.json files (BASELINE NEW), got {len(files)}")
    old, new = load(files[0]), load(files[1])
    findings = compare(old, new, time_tolerance, quality_tolerance)
    out = sys.stdout
    for side, data in (("baseline", old), ("new", new)):
        out.write(f"{side}: {data.get('suite')} suite, calibration: "
                  f"{(data.get('calibration') or {}).get('summary', 'none')}\n")
    out.write(f"{'status':8s} {'case':34s} {'workers':>7s} {'old s':>9s} {'new s':>9s} {'ratio':>6s}  quality\n")
    for f in findings:
        ratio = f"{f['time_ratio']:.2f}" if "time_ratio" in f else "–"
        old_s = f"{f['old_seconds']:.3f}" if f.get("old_seconds") is not None else "–"
        new_s = f"{f['new_seconds']:.3f}" if f.get("new_seconds") is not None else "–"
        quality = (f"{f['quality']} {f['old_value']:.6g} -> {f['new_value']:.6g}" if "new_value" in f
                   else f.get("error", ""))
        out.write(f"{f['status']:8s} {f['case']:34s} {str(f['workers'] or 'local'):>7s} {old_s:>9s} {new_s:>9s} "
                  f"{ratio:>6s}  {quality}\n")
    bad = [f for f in findings if f["status"] in REGRESSIONS]
    out.write(f"{len(bad)} regression(s) in {len(findings)} case(s) (time tolerance {time_tolerance:.0%}, "
              f"quality tolerance {quality_tolerance:.0%})\n")
    return 1 if bad else 0
