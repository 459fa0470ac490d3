"""Does a lower guidance scale bring the world generator's near-bar effects closer to the truth? Every test, no selection.

The lead of 6 December (docs/validity.md, "A lead: the guidance scale") came from ten tests picked because an audit
had found or missed them. This script asks the same question of every necessity test near the bar, chosen by the
truth table alone, so that what the audit selected cannot bias the answer:

1. for each finished run given, the classifier's truth table (``probe.world.true_effects``, 300 scenes per shape);
   the tests are its necessity cells of a background, colour or tag cue whose true effect lies in ``--band``
   (default 0.07-0.30: where a finding can land on either side of 0.15), less ``--skip`` (the tests the lead was
   formed or first checked on);
2. each test measured by ``generated_vs_rendered.measure`` at every ``--guidance`` (default 4, the world's, and 2):
   ``--pairs`` fresh necessity pairs from the class token as learned, the same pairs rendered again faithfully from
   what the oracles read in them, and the truth against the same counters. One JSON row per (test, guidance),
   appended to ``--out`` as it is measured: a second call resumes where the first stopped;
3. the summary, per guidance: mean distance of the generated effect from the rendered one and from the truth; how
   often the generated effect lands on the truth's side of the bar (0.15); the least-squares slope of the generated
   (and the rendered) effect on the truth, how much of an effect the images carry on average; how much higher the
   generated images' P(class) is than their renderings', in each arm (a class drawn more typically than the truth
   table's scenes leaves less room for a cue to move it); and, paired per test,
   how often the lower guidance is the closer one, with an exact two-sided sign test.

    .venv/bin/python benchmarks/guidance_near_bar.py RUN [RUN ...] --out benchmarks/results/guidance_near_bar.json
    .venv/bin/python benchmarks/guidance_near_bar.py --summary benchmarks/results/guidance_near_bar.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

BAR = 0.15
#: generated_vs_rendered's row keys of each arm's mean P(class), [generated, rendered]
LEVELS = {"cue": "mean P(class) cue arm, generated / rendered", "counter": "mean P(class) counter arms, generated / rendered"}
#: The ten tests of the 6 December lead (benchmarks/results/guidance_generated_vs_rendered-2026-12-06.json)
LEAD = ("demo/heart/dot", "fresh14-biased-0/star/wood", "fresh14-biased-2/star/snow", "fresh14-biased-1/square/green",
        "fresh14-biased-1/star/dot", "fresh14-biased-2/square/snow", "demo/star/snow", "fresh10-biased-1/circle/yellow",
        "fresh10-biased-0/square/green", "fresh10-clean-0/star/sand")


def tests_of(run: Path, band: tuple[float, float], skip: set[str]) -> tuple[list[tuple[str, str, float]], object, object]:
    """Step 1: the run's near-bar necessity tests [(class, cue, true effect)], its classifier's truth table and the
    classifier (loaded once per run)."""
    from probe.classifiers import load_classifier
    from probe.world import true_effects

    model = json.loads((run / "config.json").read_text())["audit"]["model"]
    classifier = load_classifier(model, device="cpu")
    table = true_effects(classifier, n=300)
    frame = table.frame
    rows = frame[(frame["kind"] == "necessity") & frame["attribute"].isin(["background", "color", "tag"])
                 & (frame["effect"] >= band[0]) & (frame["effect"] <= band[1])]
    tests = [(str(r.class_name), str(r.cue), float(r.effect)) for r in rows.itertuples()
             if f"{run.name}/{r.class_name}/{r.cue}" not in skip]
    return tests, table, classifier


def sweep(runs: list[Path], out: Path, guidances: list[float], pairs: int, band: tuple[float, float],
          skip: set[str], limit: int | None, seed: int) -> None:
    """Step 2: measure every test at every guidance, appending rows to ``out`` (resumable)."""
    from generated_vs_rendered import measure
    from probe.generators import load_generator

    done = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.is_file() else []
    have = {(r["run"], r["class"], r["cue"], r["guidance"]) for r in done}
    plan = []
    for run in runs:
        tests, table, classifier = tests_of(run, band, skip)
        plan += [(run, c, cue, truth, table, classifier) for c, cue, truth in tests]
    random.Random(seed).shuffle(plan)  # a stopped sweep has measured a random subset, not the first runs' tests
    if limit:
        plan = plan[:limit]
    print(f"{len(plan)} tests in the band {band} over {len(runs)} runs", flush=True)
    generator = load_generator("world", device="cpu")  # one for the sweep: each measurement loads its run's token
    for i, (run, cls, cue, truth, table, classifier) in enumerate(plan):
        for g in guidances:
            if (run.name, cls, cue, g) in have:
                continue
            start = time.perf_counter()
            row = measure(run, cls, cue, pairs=pairs, geometries=2, guidance=g, truth_table=table,
                          classifier=classifier, generator=generator)
            row.update(guidance=g, seconds=round(time.perf_counter() - start, 1), truth_uniform=round(truth, 3))
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            generated, rendered = row["generated, those pairs"][0], row["rendered from the oracles' readings"][0]
            print(f"[{i + 1}/{len(plan)}] {run.name} {cls}/{cue} g{g:g}: generated {generated:+.3f} rendered "
                  f"{rendered:+.3f} truth {row['truth table (uniform contexts)']:+.3f} ({row['seconds']} s)", flush=True)


def _sign_test(k: int, n: int) -> float:
    """Exact two-sided binomial p-value of k successes in n at 1/2."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _fit(x: list[float], y: list[float]) -> list[float] | None:
    """Least-squares [slope, intercept] of ``y`` on ``x`` (None for fewer than 3 points or no spread in ``x``)."""
    n = len(x)
    mx, my = sum(x) / max(n, 1), sum(y) / max(n, 1)
    sxx = sum((a - mx) ** 2 for a in x)
    if n < 3 or sxx < 1e-12:
        return None
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx
    return [round(slope, 3), round(my - slope * mx, 3)]


def summary(out: Path) -> dict:
    """Step 3: per guidance, distances and bar agreement; paired, how often the lower guidance is closer."""
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    by_test: dict[tuple, dict[float, dict]] = {}
    for r in rows:
        if r["pairs rendered again"] >= 2:
            by_test.setdefault((r["run"], r["class"], r["cue"]), {})[r["guidance"]] = r
    guidances = sorted({g for t in by_test.values() for g in t}, reverse=True)
    paired = [t for t in by_test.values() if all(g in t for g in guidances)]
    result: dict = {"tests": len(paired), "pairs per test": sorted({r["pairs"] for t in paired for r in t.values()})}
    for g in guidances:
        gen = [t[g]["generated, those pairs"][0] for t in paired]
        ren = [t[g]["rendered from the oracles' readings"][0] for t in paired]
        tru = [t[g]["truth table (uniform contexts)"] for t in paired]
        result[f"guidance {g:g}"] = {
            "mean |generated - rendered|": round(sum(abs(a - b) for a, b in zip(gen, ren)) / len(paired), 4),
            "mean generated - truth": round(sum(a - b for a, b in zip(gen, tru)) / len(paired), 4),
            "mean |generated - truth|": round(sum(abs(a - b) for a, b in zip(gen, tru)) / len(paired), 4),
            "generated on the truth's side of the bar": f"{sum((a >= BAR) == (b >= BAR) for a, b in zip(gen, tru))}"
                                                        f"/{len(paired)}",
            "true >= bar, generated >= bar": f"{sum(a >= BAR for a, b in zip(gen, tru) if b >= BAR)}"
                                             f"/{sum(b >= BAR for b in tru)}",
            "true < bar, generated >= bar": f"{sum(a >= BAR for a, b in zip(gen, tru) if b < BAR)}"
                                            f"/{sum(b < BAR for b in tru)}",
            # how the generator scales an effect: least squares of generated on truth (1 = faithful on average)
            "slope of generated on truth [slope, intercept]": _fit(tru, gen),
            "slope of rendered on truth [slope, intercept]": _fit(tru, ren),
            # how much more (or less) the generated class reads as the class than its faithful rendering, by arm
            **{f"mean P(class) {arm} arm, generated - rendered":
               round(sum(t[g][key][0] - t[g][key][1] for t in paired) / len(paired), 4) for arm, key in LEVELS.items()},
        }
    if len(guidances) == 2 and paired:
        hi, lo = guidances

        def dist(t, g, ref):
            return abs(t[g]["generated, those pairs"][0] - ref(t[g]))

        for name, ref in (("rendered", lambda r: r["rendered from the oracles' readings"][0]),
                          ("truth", lambda r: r["truth table (uniform contexts)"])):
            closer = sum(dist(t, lo, ref) < dist(t, hi, ref) for t in paired)
            ties = sum(dist(t, lo, ref) == dist(t, hi, ref) for t in paired)
            n = len(paired) - ties
            result[f"guidance {lo:g} closer to the {name} than {hi:g}"] = {
                "tests": f"{closer}/{n}", "sign test p (two-sided)": round(_sign_test(closer, n), 4)}
    print(json.dumps(result, indent=1))
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="*")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/guidance_near_bar.jsonl"))
    p.add_argument("--guidance", type=float, nargs="+", default=[4.0, 2.0])
    p.add_argument("--pairs", type=int, default=48)
    p.add_argument("--band", type=float, nargs=2, default=[0.07, 0.30])
    p.add_argument("--limit", type=int, default=None, help="at most this many tests (a random subset)")
    p.add_argument("--seed", type=int, default=0, help="the order of the tests")
    p.add_argument("--include-lead", action="store_true", help="measure the lead's ten tests too")
    p.add_argument("--summary", action="store_true", help="only summarise --out")
    a = p.parse_args()
    if not a.summary:
        if not a.runs:
            p.error("give the finished runs to measure, or --summary")
        sweep(a.runs, a.out, a.guidance, a.pairs, tuple(a.band), set() if a.include_lead else set(LEAD), a.limit,
              a.seed)
    summary(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
