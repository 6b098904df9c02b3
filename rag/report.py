"""The evaluation report: one self-contained report.html for a run directory.

A headline table (each metric with its 95% interval), plots rendered with matplotlib to PNG and
embedded (hit@k curve, latency histograms, outcomes), and every failure with its question, gold
answers, the answer given and the retrieved passages. All text from the data is escaped, and
the page's own Content-Security-Policy lets it load nothing from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.refusal import explain

LABELS = {
    "hit@1": "gold passage ranked 1st",
    "hit@3": "gold passage in top 3",
    "hit@5": "gold passage in top 5",
    "hit@10": "gold passage in top 10",
    "mrr@10": "mean reciprocal rank @10",
    "contains": "answer contains a gold answer",
    "em": "exact match",
    "f1": "token F1",
    "has_citation": "answers with a citation",
    "citation_precision": "citation precision",
    "citation_recall": "citation recall",
    "refused_unanswerable": "unanswerable questions refused",
    "refused_answerable": "answerable questions wrongly refused",
}
# the report, opened from disk or in the chat's Evaluate tab, loads nothing: its plots are
# inline data, its style inline, and no text from the data can name anything else to fetch
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
FAILURES = {"missed@5", "wrong", "refused_wrongly", "answered_wrongly"}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plots(summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(title, data URI) for each plot that the run has data for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    ranks = [r.get("gold_rank") for r in rows if r.get("context_id")]
    if ranks:
        ks = list(range(1, 11))
        curve = [sum(1 for x in ranks if x is not None and x <= k) / len(ranks) for k in ks]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(ks, curve, marker="o")
        ax.set(xlabel="k", ylabel="hit@k", ylim=(0, 1.02), title="Gold passage within top k")
        ax.grid(alpha=0.3)
        out.append(("hit@k", _png(fig)))
    for key, label in (("retrieval_ms", "retrieval (ms)"), ("total_s", "answer time (s)")):
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            fig, ax = plt.subplots(figsize=(5, 3.2))
            ax.hist(values, bins=min(30, max(5, len(values) // 3)))
            ax.set(xlabel=label, ylabel="questions", title=f"Latency: {label}")
            out.append((label, _png(fig)))
    outcomes = summary.get("outcomes", {})
    if outcomes:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        names = sorted(outcomes)
        colors = ["#c0392b" if n in FAILURES else "#27ae60" for n in names]
        ax.barh(names, [outcomes[n] for n in names], color=colors)
        ax.set(xlabel="questions", title="Outcomes per question")
        out.append(("outcomes", _png(fig)))
    return out


def _fmt(value: float) -> str:
    return "–" if value != value else f"{value:.3f}"  # NaN -> dash


def _table(summary: dict[str, Any]) -> str:
    rows = []
    for name, m in summary.get("metrics", {}).items():
        rows.append(
            f"<tr><td>{html.escape(LABELS.get(name, name))}</td><td><code>{name}</code></td>"
            f"<td><b>{_fmt(m['mean'])}</b></td><td>[{_fmt(m['low'])}, {_fmt(m['high'])}]</td>"
            f"<td>{m['n']}</td></tr>"
        )
    for name, c in summary.get("costs", {}).items():
        rows.append(
            f"<tr><td>cost</td><td><code>{name}</code></td><td>p50 {c['p50']:.2f}</td>"
            f"<td>p95 {c['p95']:.2f}</td><td>{c['n']}</td></tr>"
        )
    return (
        "<table><tr><th>metric</th><th>key</th><th>value</th><th>95% CI</th><th>n</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _failure(row: dict[str, Any]) -> str:
    esc = html.escape
    gold = ", ".join(esc(a) for a in row.get("answers", [])) or "(unanswerable)"
    passages = []
    for hit in row.get("retrieved", [])[:5]:
        mark = " ★ gold" if hit["doc_id"] == row.get("context_id") else ""
        passages.append(
            f"<li><b>{esc(hit['doc_id'])}</b> ({hit['score']:.3f}){mark}<br>"
            f"<span class=passage>{esc(hit['text'][:600])}</span></li>"
        )
    answer = row.get("answer")
    answer_html = f"<p><b>Answer:</b> {esc(answer)}</p>" if answer is not None else ""
    why = explain(row.get("signals") or [])
    if why:
        answer_html += f"<p><b>Why:</b> {esc(' '.join(why))}</p>"
    return (
        f"<div class=failure><h3>{esc(row['id'])} — {esc(row['outcome'])}</h3>"
        f"<p><b>Question:</b> {esc(row['question'])}</p><p><b>Gold:</b> {gold} "
        f"(passage {esc(str(row.get('context_id')))}, rank {row.get('gold_rank')})</p>"
        f"{answer_html}<ol class=hits>{''.join(passages)}</ol></div>"
    )


def render(summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    run = summary.get("run", {})
    data_set = run.get("name") or Path(str(run.get("questions_file") or "questions")).parent.name
    title = f"ragchat evaluation — {data_set}"
    figures = "".join(
        f"<figure><img src='{uri}' alt='{html.escape(name)}'></figure>"
        for name, uri in plots(summary, rows)
    )
    failures = [r for r in rows if r.get("outcome") in FAILURES]
    settings = run.get("settings", {})
    facts = {
        "date": run.get("date"),
        "questions": summary.get("questions"),
        "complete": run.get("complete"),
        "retrieval only": run.get("retrieval_only"),
        "embedder": settings.get("embedder"),
        "model": "(not used)" if run.get("retrieval_only") else settings.get("llm"),
        "top_k": settings.get("top_k"),
        "chunk size": settings.get("chunk_size"),
        "machine": run.get("machine", {}).get("cpu"),
        "cpus": run.get("machine", {}).get("cpus"),
        "seconds": run.get("seconds"),
    }
    facts_html = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in facts.items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}
figure{{display:inline-block;margin:0.5em}}.failure{{border-top:1px solid #ccc;margin-top:1em}}
.passage{{color:#444;font-size:0.9em}}code{{font-size:0.9em}}</style></head><body>
<h1>{html.escape(title)}</h1><table>{facts_html}</table>
<h2>Metrics</h2>{_table(summary)}
<h2>Plots</h2>{figures}
<h2>Failures ({len(failures)} of {len(rows)})</h2>
{"".join(_failure(r) for r in failures) or "<p>None.</p>"}
</body></html>"""


def write_report(out_dir: Path, summary: dict[str, Any], rows: Sequence[dict[str, Any]]) -> Path:
    path = out_dir / "report.html"
    path.write_text(render(summary, rows), encoding="utf-8")
    return path
