"""Tables and plot of ``benchmarks/peers_dit.py``'s result document (kept apart from the measurement)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CLOSING = (("fbcache", "t0.2"), ("fbcache", "t0.1"))
"""The peer points of issue 30's closing table: FirstBlockCache at thresholds 0.2 and 0.1."""


def _fmt(v: Any, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def _md(head: str, rows: list[list[str]]) -> list[str]:
    """A markdown table: ``head`` is ``"name|cost:|..."`` (a trailing ``:`` right-aligns the column)."""
    cols = head.split("|")
    return ["| " + " | ".join(c.rstrip(":") for c in cols) + " |",
            "|" + "|".join("---:" if c.endswith(":") else "---" for c in cols) + "|"] + \
        ["| " + " | ".join(r) + " |" for r in rows]


def _tail_cells(t: dict[str, Any] | None) -> list[str]:
    """mean, p90, max, images over the threshold (of n) of a point's per-image losses."""
    if not t:
        return ["-"] * 4
    return [_fmt(t["mean"], ".4f"), _fmt(t["p90"], ".4f"), _fmt(t["max"], ".4f"), f"{t['over']}/{t['n']}"]


def closing_table(doc: dict[str, Any], part: dict[str, Any] | None = None,
                  points: tuple[tuple[str, str], ...] = CLOSING) -> list[str]:
    """Issue 30's table (point | cost | mean | median | p90 | max | images > 0.05): at each of ``points`` our
    matched front schedule (of ``part``: one of ``doc["more_fronts"]``; default: the main front), then the peer,
    on the scored pairs."""
    part = doc if part is None else part
    peers = {(p["method"], p["setting"]): p for p in doc["peers"] if p.get("valid")}
    front = {r["file"]: r for r in (part.get("front") or {}).get("schedules", []) if r.get("valid")}
    rows = []
    for m in part.get("matches", []):
        key = (m["method"], m["setting"])
        if key not in points or key not in peers:
            continue
        for label, r in ((f"front `{m['ours']}` (picked at cost <= {m['peer_cost']:.3f})", front.get(m["ours"])),
                         (f"{m['method']} {m['setting']}", peers[key])):
            t = (r or {}).get("tail")
            rows.append([label] + (["-"] * 6 if not t else [
                _fmt(r["cost_ratio"], ".3f"), _fmt(t["mean"], ".4f"), _fmt(t["median"], ".4f"), _fmt(t["p90"], ".4f"),
                _fmt(t["max"], ".4f"), f"{t['over']} / {t['n']}"]))
    return _md("point|cost:|mean:|median:|p90:|max:|images > 0.05:", rows) if rows else []


def tables(doc: dict[str, Any]) -> str:
    """The markdown tables of ``doc``: peers with our match (mean and p90 ratios), our front, ECAD vs default, and
    the closing table."""
    full_ms = doc["full_compute"]["ms_per_image"]
    by_peer = {(m["method"], m["setting"]): m for m in doc.get("matches", [])}
    front = {r["file"]: r for r in (doc.get("front") or {}).get("schedules", [])}
    rows = []
    for p in doc["peers"]:
        m = by_peer.get((p["method"], p["setting"]), {})
        if not p.get("valid"):
            rows.append([p["method"], p["setting"], f"invalid: {p['reason']}"] + [""] * 14)
            continue
        ours = front.get(m.get("ours") or "", {})
        rows.append([p["method"], p["setting"], _fmt(p["cost_ratio"], ".3f"), _fmt(p.get("ms_per_image"), ".1f"),
                     *_tail_cells(p.get("tail")), _fmt(m.get("ours")), _fmt(m.get("ours_cost"), ".3f"),
                     *_tail_cells(ours.get("tail")), _fmt(m.get("ratio"), ".2f"), _fmt(m.get("p90_ratio"), ".2f"),
                     m.get("verdict", "")])
    lines = [f"full compute: {_fmt(full_ms, '.1f')} ms per image", ""] + _md(
        "peer|setting|cost:|ms/img:|mean:|p90:|max:|> 0.05:|ours (cost <= peer)|cost:|mean:|p90:|max:|> 0.05:|"
        "mean ratio:|p90 ratio:|verdict", rows)
    if "front" in doc:
        rows = [[r["file"], f"invalid: {r['reason']}"] + [""] * 10 if not r.get("valid") else [
            r["file"], _fmt(r["cost_ratio"], ".3f"), _fmt(r["analytic_cost_ratio"], ".3f"),
            _fmt(r.get("ms_per_image"), ".1f"), _fmt(r["train_lpips"]), _fmt((r.get("run_heldout") or {}).get("mean")),
            _fmt((r.get("run_heldout") or {}).get("p90")), *_tail_cells(r.get("tail")),
            _fmt(r["tail"]["median"], ".4f") if r.get("tail") else "-"]
            for r in sorted(doc["front"]["schedules"], key=lambda r: r.get("cost_ratio") or 9)]
        lines += [""] + _md("our schedule|cost (executed):|cost (evaluator's MAC table):|ms/img:|train LPIPS:|"
                            "run held-out mean:|run held-out p90:|mean:|p90:|max:|> 0.05:|median:", rows)
    if "ecad_vs_default" in doc:
        c = doc["ecad_vs_default"]
        costs = list(c["default"]["at_cost"])
        rows = [[key, str(c[key]["run"]), _fmt(c[key]["trials"].get("total")), str(c[key]["front_size"]),
                 _fmt(c[key]["hypervolume"], ".5f")] + [_fmt(c[key]["at_cost"][k]) for k in costs]
                for key in ("default", "ecad")]
        lines += [""] + _md("space|run|trials:|front:|hypervolume:|" + "|".join(f"LPIPS @ <= {k}:" for k in costs),
                            rows)
    if s := doc.get("summary"):
        g = doc.get("goal") or {"mean": 0.7, "p90": None}
        lines += ["", f"goal (ours <= {g['mean']} x the peer's mean" + (f" and <= {g['p90']} x its p90" if g["p90"]
                                                                       else "") + " at <= its cost): "
                  f"{s['wins']} of {s['peer_points']} peer points ({s['exact_peers']} more skipped nothing)"] + \
            [f"  {loss}" for loss in s["losses"]]
    if closing := closing_table(doc):
        lines += [""] + closing
    for part in doc.get("more_fronts", []):
        s, f = part["summary"], part["front"]
        lines += ["", f"front {f['run']} ({_fmt(f['trials'].get('total'))} trials): goal met at {s['wins']} of "
                  f"{s['peer_points']} peer points"] + [f"  {loss}" for loss in s["losses"]]
        if closing := closing_table(doc, part):
            lines += [""] + closing
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> Path:
    """Mean and p90 of the per-image losses (log; 0 drawn at 1e-6) vs executed-MAC cost: a marker per peer method,
    our front as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(p["method"] for p in doc["peers"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    for ax, stat in zip(axes, ("mean", "p90")):
        def value(r: dict[str, Any], stat: str = stat) -> float:
            t = r.get("tail")
            return max(t[stat] if t else r["lpips"], 1e-6)

        for method, marker in zip(methods, "os^Dvx<>"):
            pts = [(p["cost_ratio"], value(p)) for p in doc["peers"] if p.get("valid") and p["method"] == method]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, label=method, s=40)
        for run, style in ((doc.get("front"), "k-"), ((doc.get("ecad_vs_default") or {}).get("ecad_front"), "g--")):
            pts = sorted((r["cost_ratio"], value(r)) for r in (run or {}).get("schedules", [])
                         if r.get("valid") and "lpips" in r)  # unscored (not matched) schedules: no point
            if pts:
                ax.plot(*zip(*pts), style, marker=".", label=f"cachesearch ({run['run']})", drawstyle="steps-post")
        n = next((p["tail"]["n"] for p in doc["peers"] if p.get("tail")), None)
        ax.set(yscale="log", xlabel="cost ratio (MACs of what ran / full compute)",
               ylabel=f"{stat} {doc.get('metric', 'LPIPS')} to full compute" + (f" ({n} pairs)" if n else ""))
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{doc.get('model')}: peers vs cachesearch ({doc.get('steps')} steps)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
