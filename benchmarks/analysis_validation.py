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


class CachingGenerator:
    """Wraps a Generator so identical (prompt, seed, settings) are generated once (shared between classifiers)."""

    def __init__(self, gen):
        self._gen, self._cache, self.generated = gen, {}, 0

    def __getattr__(self, name):
        return getattr(self._gen, name)

    def generate(self, prompts, seeds, **kw):
        import torch

        key = tuple(sorted(kw.items()))
        todo = [(p, s) for p, s in zip(prompts, seeds) if (p, s, key) not in self._cache]
        todo = list(dict.fromkeys(todo))
        if todo:
            imgs = self._gen.generate([p for p, _ in todo], [s for _, s in todo], **kw)
            self.generated += len(todo)
            for (p, s), im in zip(todo, imgs):
                self._cache[(p, s, key)] = im.detach().cpu()
        return torch.stack([self._cache[(p, s, key)] for p, s in zip(prompts, seeds)])


def world_token_free(seeds: int, carriers: int, steps: int) -> None:
    """The bundled world's biased and clean classifiers through analyze_run on token-free run directories
    (the interventions alone): recovery of the planted cues, passing findings for the clean model."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from test_analysis_world import _token_free_run

    from probe.analysis import AnalysisConfig, analyze_run
    from probe.classifiers import load_classifier
    from probe.generators import load_generator
    from probe.world.assets import bundled_bias, bundled_classifier_path, bundled_generator_path

    torch.set_num_threads(2)
    gen = CachingGenerator(load_generator(bundled_generator_path(), device="cpu"))
    clfs = {n: load_classifier(str(bundled_classifier_path(n))) for n in ("biased", "clean")}
    cfg = AnalysisConfig(cues="world", steps=steps, sufficiency_seeds=seeds, n_carriers=carriers, necessity_seeds=seeds,
                         n_boot=1000, attributions=False, off_object=False, token_shift=False, batch_size=32)
    tmp = Path(tempfile.mkdtemp(prefix="probe-world-validation-"))
    t0 = time.perf_counter()
    found = {}
    for name, clf in clfs.items():
        run = _token_free_run(tmp / name, gen, clf, list(range(1000, 1000 + seeds)))
        found[name] = analyze_run(run, clf, gen, cfg, progress=lambda m: print(m, flush=True))
        print(f"{name}: {len(found[name])} findings, {len(found[name].passing)} passing, {gen.generated} images so far,"
              f" {time.perf_counter() - t0:.0f}s", flush=True)
    labels = list(clfs["biased"].labels)
    bias = bundled_bias("biased")
    from probe.world.demo import planted_cue_recovery

    checks = planted_cue_recovery(found["biased"], labels, bias)
    recovered = sum(c.recovered for c in checks)
    for c in checks:
        print(f"planted {c.class_name}: {c.attribute}={c.value} -> {'RECOVERED' if c.recovered else 'missed'}; top 3:")
        for f in found["biased"].for_class(labels.index(c.class_name))[:3]:
            print("   ", repr(f))
    others = [i for i, n in enumerate(labels) if n not in bias]
    false_b = {f.class_index for f in found["biased"].passing if f.class_index in others}
    false_c = {f.class_index for f in found["clean"].passing}
    print(f"\nrecovery {recovered}/{len(bias)}; unplanted classes of the biased model with a passing finding "
          f"{len(false_b)}/{len(others)}; classes of the clean model with a passing finding {len(false_c)}/{len(labels)}")
    for f in found["clean"].passing:
        print("  clean:", repr(f))
    print(f"{gen.generated} images generated, {time.perf_counter() - t0:.0f}s")
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strength", type=float, nargs=2, default=(25.0, 60.0), metavar=("LO", "HI"),
                    help="planted cue weight range (the object colour's weight is 60)")
    ap.add_argument("--world", action="store_true", help="use the bundled shapes world (runs the slow validation tests)")
    ap.add_argument("--world-token-free", action="store_true",
                    help="bundled world, interventions only (no token optimisation), CPU-sized settings")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--carriers", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    if args.world_token_free:
        return world_token_free(args.seeds, args.carriers, args.steps)
    if args.world:
        import pytest

        raise SystemExit(pytest.main([str(ROOT / "tests" / "test_analysis_world.py"), "-s", "-q", "-m", "slow or not slow"]))
    fake_trials(args.trials, args.seed, tuple(args.strength))


if __name__ == "__main__":
    main()
