"""The search sections of docs/benchmarks.md (search throughput, peers, runtime families, objective statistic, tail
causes, search efficiency), rendered from their result files by docs/gen_benchmarks.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _bench_util import bench_module, env_line, f, load, md


def search_throughput() -> str:
    d = load("search_throughput.json")
    b, c = d["arms"]["baseline"], d["arms"]["current"]
    d16 = load("search_throughput_16train.json")
    c16 = d16["arms"]["current"]

    def row(label: str, key: Callable[[dict], Any]) -> list[str]:
        return [label, str(key(b)), str(key(c))]

    split = ("preparation", "candidate_compute", "search_overhead", "export")
    rows = [
        row("workers", lambda a: a["workers"]),
        row("distinct candidates evaluated", lambda a: a["distinct_candidates"]),
        row("… of which screened out", lambda a: a["screened_out"]),
        row("duplicates of an evaluated mask (not re-run)", lambda a: a["duplicates"]),
        row("**candidates per minute**", lambda a: f"{a['candidates_per_min']:.1f}"),
        row("hypervolume (common held-out set)", lambda a: f"{a['hypervolume']:.5f}"),
        row("front size", lambda a: a["front_size"]),
        row("held-out/train loss of the front, median", lambda a: a["heldout_train_ratio_median"]),
        row("… within 20 %", lambda a: a["within_20pct"]),
        *[row(f"time: {k.replace('_', ' ')} (s)", lambda a, k=k: a["split_s"][k]) for k in split],
        row("wall time (s)", lambda a: a["wall_s"]),
    ]
    s = d["summary"]
    return "\n\n".join([
        "## Search throughput",
        "`python benchmarks/search_throughput.py`: the no-argument `cachesearch run` of an earlier release and of a "
        "later checkout, one after the other on the same CPU; both fronts re-scored on one common set of "
        f"{d['heldout_images']} held-out images for the hypervolume of (held-out loss, cost ratio) up to "
        f"{tuple(d['ref_point'])} (`results/search_throughput.json`).",
        env_line(d["environment"]),
        md(["", b["revision"], c["revision"]], rows),
        f"The later checkout evaluates {s['candidates_per_min_ratio']:.2f}× the candidates per minute at "
        f"{s['hypervolume_ratio']:.3f}× the hypervolume. With 16 train images instead "
        f"(`results/search_throughput_16train.json`) it made {c16['candidates_per_min']:.1f} candidates per minute "
        f"({d16['summary']['candidates_per_min_ratio']:.2f}×) at {d16['summary']['hypervolume_ratio']:.3f}× the "
        f"hypervolume, held-out/train median {c16['heldout_train_ratio_median']}."])


def peers() -> str:
    pd = bench_module("peers_dit")
    d = load("peers_dit.json")
    e = load("ecad_vs_default_dit.json")
    s = d["summary"]
    c = e["ecad_vs_default"]
    g = d["goal"]
    n = next(p["tail"]["n"] for p in d["peers"] if p.get("tail"))
    losses = [m for m in d["matches"] if m["verdict"].startswith("LOSS")]
    lose = ("We lose at " + "; ".join(f"{m['method']} {m['setting']} (cost {m['peer_cost']:.3f}: "
                                      f"{m['verdict'].removeprefix('LOSS: ')})" for m in losses) + "."
            if losses else "No peer point is lost.")
    return "\n\n".join([
        "## Peers on the FLUX-architecture model",
        f"`python benchmarks/peers_dit.py --model {d['model']} --steps {d['steps']} --unseen {d['config']['unseen']} "
        f"--repeats {d['config']['repeats']} --front {' '.join(d['config']['front'])}` (`results/peers_dit.json`, plot "
        "`results/peers_dit.png`; method: [Peers on transformer denoisers](peers-dit.md)): diffusers' "
        "FirstBlockCache, TaylorSeer, MagCache, PyramidAttentionBroadcast and FasterCache and cache-dit's DBCache next "
        f"to the front of a search ({d['front']['trials']['total']} trials; its exported files are committed as "
        f"`artifacts/examples/embedded-shapes-flux-600/`). Every point is scored on **{n} (prompt, "
        "seed) pairs that no search saw** (neither its train images nor its held-out validation): the mean of the "
        "per-image losses, their median, p90, max and the images over "
        f"{g['broken']}. Cost is the MACs of the modules that actually ran over full compute. Our point is the front "
        "schedule the run's own held-out validation ranks first (its held-out "
        f"{d['config']['select_stat']}) among those costing no more than the peer — chosen before any unseen pair "
        f"is scored. Goal: ours ≤ {g['mean']}× the peer's mean **and** ≤ {g['p90']}× its p90; met at "
        f"**{s['wins']} of {s['peer_points']}** peer points ({s['exact_peers']} more skipped nothing). {lose} "
        "The dynamic caches decide per prompt and step, which a static schedule cannot; this is one small model."
        + "".join(f" Against the same peer points, the front of `{m['front']['run']}` ("
                  + (f"{m['front']['trials']['total']} trials" if m["front"]["trials"]["total"] else
                     "the committed example run, searched before issue 30's guards")
                  + f") meets the goal at {m['summary']['wins']} of {m['summary']['peer_points']}."
                  for m in d.get("more_fronts", [])),
        env_line(d["environment"], extra=f"{d['seconds']:.0f} s under load"),
        pd.tables(d),
        "### ECAD's space vs the default space at equal trials",
        f"`python benchmarks/peers_dit.py --peers '' --front {e['config']['front']} --ecad-front "
        f"{e['config']['ecad_front']}` (`results/ecad_vs_default_dit.json`; the two run folders are not committed; "
        f"{e['config']['n_heldout']} held-out images, measured before the unseen pairs): ECAD's formulation (one "
        "recompute bit per step × component) and the default `dit` space, both searched by `cachesearch run` with "
        f"the same trial budget: hypervolume {c['ecad']['hypervolume']:.4f} vs {c['default']['hypervolume']:.4f} "
        f"({c['ecad']['hypervolume'] / c['default']['hypervolume']:.2f}×), fronts of {c['ecad']['front_size']} and "
        f"{c['default']['front_size']} schedules.",
        env_line(e["environment"]),
        _without_peer_table(pd.tables(e))])


def _runtime_families_one(doc: dict[str, Any], title: str, what: str) -> str:
    rf = bench_module("runtime_families")
    w, wo = doc["with_runtime"], doc["without_runtime"]
    st = doc["settings"]
    on_front = doc["runtime_on_front"]
    fams = sorted({r["family"] for r in on_front})
    ratio = doc["hypervolume_ratio_with_over_without"]
    tw, two = w["trials"], wo["trials"]
    return "\n\n".join([
        f"### {title}",
        f"`cachesearch run --model {st['model']} --steps {st['steps']} --n-train {st['n_train']} --n-heldout "
        f"{st['n_heldout']} --n-heldout-max {st['heldout_max']} --profile-prompts {st['profile_prompts']} --trials "
        f"{st['trials']} --timeout 0 --workers 1`, once with the default space (`{w['space']}`: static and runtime "
        f"families) and once with `--space {wo['space']}` (the same space without the runtime families), then "
        f"`python benchmarks/runtime_families.py --with {w['run']} --without {wo['run']}"
        + ("" if doc["ref"][0] == 0.1 else f" --hv-ref-loss {doc['ref'][0]:g}")
        + ("" if what == "runtime_families.json" else f" --out benchmarks/results/{what}")
        + f"` (`results/{what}`; the run folders are not committed). {what_note(doc)}"
        f"Finished trials {tw['finished']} and {two['finished']} ({tw['failed']} and {two['failed']} failed); "
        f"summed trial time {tw['trial_seconds']:.0f} s and {two['trial_seconds']:.0f} s (wall clock on a shared "
        "2-core CPU under heavy load from other jobs: noisy, compare with care). "
        f"Hypervolume of (held-out loss, train cost) up to ({doc['ref'][0]}, {doc['ref'][1]}): "
        f"{w['hypervolume']:.5f} with the runtime families vs {wo['hypervolume']:.5f} without "
        f"({f(ratio, '.3f')}×); front {w['front_size']} schedules ({w['front_kinds']['runtime']} runtime) vs "
        f"{wo['front_size']}. Runtime schedules on the front: "
        + (f"{len(on_front)} ({', '.join(fams)})." if on_front else "none."),
        env_line(doc["environment"], extra=doc.get("load") or ""),
        _trial_names(rf.tables(doc))])


def _trial_names(text: str) -> str:
    """A run's file names (``t0051-magcache-t0.39.yaml``) as ``magcache-t0.39 (trial 51)``: the run folders are
    not committed, and a page shows no file name a reader cannot open (tests/docs/test_examples.py)."""
    import re

    return re.sub(r"(?<![\w.-])t(\d{4})-([\w.-]*\w)\.yaml", lambda m: f"{m[2]} (trial {int(m[1])})", text)


def what_note(doc: dict[str, Any]) -> str:
    """The benchmark's own note (how the runs were made), as a sentence."""
    note = (doc.get("note") or "").strip()
    return f"{note} " if note else ""


def runtime_families() -> str:
    flux = load("runtime_families.json")
    wan = load("runtime_families_wan.json")
    return "\n\n".join([
        "## Runtime caches on the front (issue 27)",
        "Two searches of the same model at equal trials: the default `dit` space (the static families and the "
        "runtime families — diffusers' FirstBlockCache, MagCache, PAB, FasterCache and cache-dit's DBCache, cost "
        "counted from what executed) against the same space without the runtime families. Per run: the front "
        "(validated on held-out prompts), its hypervolume, the best held-out loss at a train cost of at most "
        "0.3 / 0.5 / 0.7 (chosen by train loss), which runtime schedules reach the front, and the with-run's best "
        "schedule of each family at each budget (`schedules/index.yaml`'s `families`; held-out loss, with train "
        "loss and cost in brackets, and the trial). Method: [Runtime caches](runtime-caches.md).",
        _runtime_families_one(flux, "FLUX-architecture model (`embedded:shapes-flux`)", "runtime_families.json"),
        _runtime_families_one(wan, "Tiny random-weight Wan 2.1 (`arch:wan2.1-tiny`, CFG as two passes per step)",
                              "runtime_families_wan.json")])


def _without_peer_table(text: str) -> str:
    """``peers_dit.tables`` of a run without peers: its space comparison only (not the empty peer table, nor the
    file list of a front whose run folder is not committed)."""
    return next(b for b in text.split("\n\n") if b.startswith("| space |"))


def objective_stat() -> str:
    om = bench_module("objective_stat")
    d = load("objective_stat.json")
    cfg = d["config"]
    runs = [(m, st, sd["search"]) for m, md in d["models"].items() for st, sd in md["stats"].items()]
    trials = sorted({r["trials"] for _, _, r in runs})
    return "\n\n".join([
        "## Which statistic the search should minimise",
        f"`python benchmarks/objective_stat.py --trials {cfg['trials']} --models "
        f"{','.join(dict.fromkeys(m.split(' seed ')[0] for m in d['models']))} --stats "
        f"{','.join(dict.fromkeys(st for _, st, _ in runs))}` (invocations per statistic and `--seed`, then `--merge`; "
        "`results/objective_stat.json`; issue 30, "
        "point 3): per model one search per `--objective-stat` at an equal trial budget "
        f"(`--trials {cfg['trials']}`: {' and '.join(map(str, trials))} trials in the journals, trials interrupted by "
        f"a restart included; seed 0, or N where the model is marked 'seed N'; {cfg['workers']} workers, no timeout), "
        "then at each cost budget the front schedule a user would pick (the lowest train objective costing at most "
        f"the budget), scored on {cfg['n_unseen']} (prompt, seed) pairs no search saw. The summary gives, per "
        "statistic, the geometric mean over the budgets of its pick's unseen mean / p90 / max over the mean "
        "objective's pick at the same budget (< 1: better) and the images over 0.05 summed over the budgets. "
        "The default this chose and why: [Why the tail](tail.md#the-search-objective).",
        env_line(d["environment"], extra="wall time not compared: a shared, loaded CPU"),
        om.tables(d).replace("## ", "### ")])


def tail_causes() -> str:
    tc = bench_module("tail_causes")
    d = load("tail_causes.json")
    return "\n\n".join([
        "## Why the tail",
        f"`python benchmarks/tail_causes.py` (`results/tail_causes.json`, grid `{d['grid']}`; issue 30, point 4): "
        f"static middle caches of `{d['model']}` ({d['steps']} steps) around the issue's broken point, each scored "
        f"on {d['schedules'][0]['n']} unseen (prompt, seed) pairs; *broken*: images over {d['broken_threshold']}; "
        "*rho*: Spearman's rank correlation between an image's missed change (its own middle-block change over "
        "the reused steps, over what the profile predicted there) and its loss. Reading: [Why the tail](tail.md).",
        env_line(d["environment"], extra=f"{d['seconds']:.0f} s under load"),
        tc.table(d)])


def forecast_guard() -> str:
    fg = bench_module("forecast_guard")
    d = load("forecast_guard.json")
    return "\n\n".join([
        "## The forecast divergence guard",
        f"`python benchmarks/forecast_guard.py` (`results/forecast_guard.json`; issue 30, point 4): the static middle "
        f"caches of the tail grid above (`{d['model']}`, {d['steps']} steps, threshold {d['base']['threshold']}, "
        f"warm-up {d['base']['warmup']}) with order 1 and 2 Taylor forecasts over reuse gaps of at most 1, 2 and any "
        "number of steps, without and with `taylor_guard` (a forecast stops at the first term that outgrows the one "
        f"before it, per image, on the device), on {d['schedules'][0]['n']} unseen (prompt, seed) pairs; *broken*: "
        f"images over {d['broken_threshold']}; the last column counts the images whose loss the guard changed. "
        "Reading: [Why the tail](tail.md#guards).",
        env_line(d["environment"], extra=f"{d['seconds']:.0f} s"),
        fg.table(d)])


def near_full() -> str:
    nf = bench_module("near_full")
    d = load("near_full.json")
    fb = next(x for x in load("peers_dit.json")["peers"] if x["method"] == "fbcache" and x["setting"] == "t0.05")
    return "\n\n".join([
        "## Static schedules near full compute",
        f"`python benchmarks/near_full.py` (`results/near_full.json`; issue 30, point 5): the `dit` space's static "
        f"candidates at the high-cost end of `{d['model']}` ({d['steps']} steps) — fewer steps and the "
        "profile-placed middle cache (warm-up 1, runs of at most one reused step) with the profile a run makes "
        f"({d['profile_prompts']} train prompts) — on {d['schedules'][0]['n']} unseen (prompt, seed) pairs, the "
        "pairs of the peer comparison; *broken*: images over "
        f"{d['broken_threshold']}. FirstBlockCache at threshold 0.05 runs {fb['cost_ratio']:.3f} of the compute on "
        f"these pairs with mean {fb['tail']['mean']:.1e} and median {fb['tail']['median']:.0e} (it skips a step on "
        "a few prompts only). Reading: [Why the tail](tail.md#peer-claims-on-enough-pairs).",
        env_line(d["environment"], extra=f"{d['seconds']:.0f} s"),
        nf.table(d)])


def search_wall() -> str:
    sw = bench_module("_search_wall")
    d = load("search_efficiency_wall.json")
    return "\n\n".join([
        "## Search efficiency on the wall clock",
        "`python benchmarks/search_efficiency.py wall` (`results/search_efficiency_wall.json`; issue 28, point 4): "
        "`cachesearch run` as a user runs it, one run at a time on a quiet machine: the old default (`today`, pinned: "
        f"`{d['arms']['today']}`) against the defaults at `--timeout 80` with NSGA-II (`new-nsga2`, the default "
        "when it ran) and with TPE (`new-tpe`, the default since); every arm validates its export on at most "
        f"{d['arms']['today'].split('--n-heldout-max ')[-1]} held-out pairs. Each exported front re-scored on one "
        "common "
        f"set of {d['heldout']} held-out images; hypervolume of (log10 loss, cost) up to (0.5, 1.05). *wall s*: the "
        "whole command (references, search, validation, export).",
        env_line(d["environment"]),
        sw.wall_table(d)])


def search_full() -> str:
    eff = bench_module("_efficiency")
    d = load("search_efficiency_full.json")
    return "\n\n".join([
        "## Search efficiency at full scale",
        "`python benchmarks/search_efficiency.py curves` (`results/search_efficiency_full.json`, `.png`; issue 28, "
        "points 1 and 2): the compute curves of the wall-clock runs below — whole `cachesearch run` commands, two "
        "workers, one at a time on a quiet machine, three or five seeds per arm — rebuilt from each run's study: "
        "the train front at 14 compute checkpoints, every front schedule re-scored on one common set of "
        f"{d['heldout_images']} held-out images, hypervolume of {d['hypervolume']}. Each cell: the compute to "
        "reach that share of the old default's final hypervolume (its `--timeout 330` runs), as a multiple of the "
        "old default's compute (MACs; median wall seconds), median over seeds, 'never' when most seeds do not "
        "reach it. Arms: [the wall-clock table](#search-efficiency-on-the-wall-clock).",
        env_line(d["environment"]),
        eff.tables(d)])


def search_efficiency() -> str:
    eff = bench_module("_efficiency")
    d, t, x = (load(f"{n}.json") for n in ("search_efficiency", "search_efficiency_train", "prefix_sharing"))
    return "\n\n".join([
        "## Search efficiency",
        "`python benchmarks/search_efficiency.py run/report`: the front's hypervolume against the denoiser MACs "
        f"a search executed, per configuration and seed; the fronts' {d['measure']}, hypervolume of "
        f"{d['hypervolume']}. Each cell: the compute to reach that share of the old default's final hypervolume, "
        "as a multiple of the old default's compute (MACs; median wall seconds on a shared CPU: distorted by load), "
        "median over seeds, 'never' when most seeds do not reach it (`results/search_efficiency.json`, `.png`; "
        "what was run and the default chosen: [search efficiency](search-efficiency.md)).",
        env_line(d["environment"], extra=f"old default's runs: {d['today_trials']} trials"),
        eff.tables(d),
        f"The same runs on their {t['measure']} (`results/search_efficiency_train.json`, `.png`):",
        eff.tables(t),
        "`python benchmarks/search_efficiency.py prefix`: exact prefix sharing's saving, the share of the "
        "denoiser MACs independent evaluations of the same candidates would execute that came from an earlier "
        f"candidate's prefix instead (NSGA-II, seed {x['seed']}; `results/prefix_sharing.json`).",
        env_line(x["environment"]),
        eff.prefix_table(x)])
