"""The batch's report: ``OUT/report.json`` and ``OUT/index.html`` (a page that opens without a server: each asset's
before/after sheet and numbers, failures first)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from .runner import SHEET_FILE, BatchResult
from .state import AssetState

REPORT_FILE = "report.json"
INDEX_FILE = "index.html"


def _status(state: AssetState, skipped: list[str]) -> str:
    if state.id in skipped:
        return "skipped"
    return state.status if state.status in ("done", "failed") else "unfinished"


def report_dict(result: BatchResult, out: Path) -> dict[str, Any]:
    """``{"assets": [...], "totals": {...}}``: per asset its status (``done``, ``failed``, ``skipped``: finished by
    an earlier run, or ``unfinished`` after an interruption), stage seconds, metrics, error and outputs."""
    assets = []
    for st in result.states:
        folder = out / st.id
        outputs = {name: str(p.relative_to(out)) for name, p in (
            ("sheet", folder / SHEET_FILE), ("result", folder / "result"), ("views", folder / "views"))
            if p.exists()}
        assets.append({"asset": st.asset, "id": st.id, "status": _status(st, result.skipped), "times": st.times,
                       "metrics": st.metrics, "error": st.error, "outputs": outputs})
    counts = {k: sum(a["status"] == k for a in assets) for k in ("done", "failed", "skipped", "unfinished")}
    return {"assets": assets,
            "totals": {**counts, "assets": len(assets), "seconds": round(result.seconds, 2),
                       "edit_idle_share": round(result.edit_idle_share, 4), "interrupted": result.interrupted,
                       "stopped_at_first_failure": result.stopped_early}}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>GroupEdit batch</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #ccc; padding: 0.4em 0.8em; text-align: left; vertical-align: top; }}
.failed {{ color: #b00020; }} .done {{ color: #1b5e20; }} img {{ max-width: 720px; }}
</style></head><body>
<h1>GroupEdit batch</h1>
<p>{summary}</p>
<table><tr><th>asset</th><th>status</th><th>closed loop</th><th>seconds (capture / edit / bake)</th>
<th>before (top) / after (bottom)</th></tr>
{rows}
</table></body></html>
"""


def write_report(result: BatchResult, out: Path) -> dict[str, Any]:
    """Write ``report.json`` and ``index.html`` into ``out`` (each whole, then renamed); returns the report."""
    report = report_dict(result, out)
    order = {"failed": 0, "unfinished": 1, "done": 2, "skipped": 3}
    rows = []
    for a in sorted(report["assets"], key=lambda a: order[a["status"]]):
        err = a["error"] or {}
        status = a["status"] + (f": {err.get('stage')} ({err.get('category')}): {err.get('reason')}"
                                if a["status"] == "failed" else "")
        loop = a["metrics"].get("psnr_db")
        times = " / ".join(f"{a['times'][s]:.1f}" if s in a["times"] else "-" for s in ("capture", "edit", "bake"))
        sheet = f'<img src="{html.escape(a["outputs"]["sheet"])}" alt="">' if "sheet" in a["outputs"] else ""
        rows.append(f'<tr><td>{html.escape(a["id"])}<br><small>{html.escape(a["asset"])}</small></td>'
                    f'<td class="{a["status"]}">{html.escape(status)}</td>'
                    f'<td>{"" if loop is None else f"{loop:.1f} dB"}</td><td>{times}</td><td>{sheet}</td></tr>')
    t = report["totals"]
    summary = (f"{t['assets']} assets: {t['done']} done, {t['failed']} failed, {t['skipped']} skipped (done "
               f"earlier), {t['unfinished']} unfinished; {t['seconds']:.0f} s; edit server idle "
               f"{100 * t['edit_idle_share']:.0f} % of the time")
    for name, text in ((REPORT_FILE, json.dumps(report, indent=2) + "\n"),
                       (INDEX_FILE, _PAGE.format(summary=html.escape(summary), rows="\n".join(rows)))):
        part = out / (name + ".part")
        part.write_text(text, encoding="utf-8")
        os.replace(part, out / name)
    return report
