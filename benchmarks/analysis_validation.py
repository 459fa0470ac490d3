"""Recovery and false-finding rates of probe's analysis against planted cues.

Default: the fast fake shapes world of the unit tests (tests/analysis_fakes.py),
over random trials (planted class, background, strength, seeds; the token learned
the cue or not). With ``--world``: the bundled shapes world's biased and clean
classifiers (needs its bundled models; runs probe audit first, minutes on a CPU).

    .venv/bin/python benchmarks/analysis_validation.py --trials 20
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def fake_trials(trials: int, seed: int, strengths: tuple[float, float] = (25.0, 60.0)) -> None:
    from analysis_fakes import BACKGROUNDS, CLASSES, FakeGenerator, FakeOracles, PlantedClassifier, fake_cues, write_run

    from probe.analysis import AnalysisConfig, analyze_run

    rng = random.Random(seed)
    tokens = {i: f"<probe-{i}>" for i in range(len(CLASSES))}
    recovered = planted_total = 0
    false_biased = false_clean = 0
    clean_classes = other_classes = 0
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="probe-validation-"))
    try:
        for trial in range(trials):
            ci = rng.randrange(len(CLASSES))
            bg = rng.choice(BACKGROUNDS)
            strength = rng.uniform(*strengths)
            learned = rng.random() < 0.5
            cfg = AnalysisConfig(n_boot=500, ig_steps=8, seed=rng.randrange(10_000, 90_000), methods=("integrated_gradients",))
            # biased model
            gen = FakeGenerator({tokens[ci]: f"on {bg}"} if learned else {})
            clf = PlantedClassifier({ci: bg}, strength)
            run = write_run(tmp / f"b{trial}", gen, clf, tokens=tokens, n_seeds=4)
            found = analyze_run(run, clf, gen, cfg, cues=fake_cues(), scorer=FakeOracles())
            top = [f for f in found.for_class(ci) if f.kind != "off-object"]
            ok = bool(top) and top[0].passes and top[0].cue == bg
            recovered += ok
            planted_total += 1
            others = [c for c in range(len(CLASSES)) if c != ci]
            other_classes += len(others)
            false_biased += len({f.class_index for f in found.passing if f.class_index in others and f.kind != "off-object"})
            # clean model: its tokens have nothing spurious to learn
            clean, gen = PlantedClassifier({}, 0.0), FakeGenerator()
            run = write_run(tmp / f"c{trial}", gen, clean, tokens=tokens, n_seeds=4)
            found_clean = analyze_run(run, clean, gen, cfg, cues=fake_cues(), scorer=FakeOracles())
            false_clean += len({f.class_index for f in found_clean.passing})
            clean_classes += len(CLASSES)
            print(f"trial {trial:2d}: plant {CLASSES[ci]}<-{bg} strength {strength:4.1f} token learned={learned!s:5}"
                  f" -> top {top[0].cue if top else None!r} ({'recovered' if ok else 'MISSED'}); "
                  f"clean passing {len(found_clean.passing)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dt = time.perf_counter() - t0
    print(f"\nrecovery rate (planted cue is its class's top finding and passes): {recovered}/{planted_total}"
          f" = {recovered / planted_total:.0%}")
    print(f"false findings, biased models (unplanted classes with a passing cue finding): {false_biased}/{other_classes}"
          f" = {false_biased / max(other_classes, 1):.0%}")
    print(f"false findings, clean models (classes with any passing finding): {false_clean}/{clean_classes}"
          f" = {false_clean / max(clean_classes, 1):.0%}")
    print(f"{trials} trials in {dt:.1f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strength", type=float, nargs=2, default=(25.0, 60.0), metavar=("LO", "HI"),
                    help="planted cue weight range (the object colour's weight is 60)")
    ap.add_argument("--world", action="store_true", help="use the bundled shapes world (runs the slow validation test)")
    args = ap.parse_args()
    if args.world:
        import pytest

        raise SystemExit(pytest.main([str(ROOT / "tests" / "test_analysis_world.py"), "-s", "-q", "-m", "slow or not slow"]))
    fake_trials(args.trials, args.seed, tuple(args.strength))


if __name__ == "__main__":
    main()
