"""From a finding to its fix in the shapes world: balance, fine-tune the last layer, re-audit, compare.

    probe demo --classes star --out runs/demo                      # 0. the audit: star leans on grass
    python examples/balance_and_finetune.py --run runs/demo --balance star:grass --out runs/loop

1. **Balance data** (``probe generate RUN --balance star:grass``): star images without grass (its counters stated)
   and its nearest confusers with grass, from plain prompts, each checked by the world's oracles (for a cue the class
   avoids, a finding with a negative effect, the other way round: the class with it, its confusers without).
2. **Fine-tune the last layer** of the run's world classifier on its own training distribution (re-rendered from
   the recipe in its ``.bias.json``) plus the balance images: every other weight, and the batch-norm statistics,
   stay as they were (last-layer retraining: features are kept, only how they are weighed changes). The loss is
   the mean cross-entropy over a training batch plus ``--balance-weight`` x the mean over the balance images (group
   reweighting: a few hundred balance images weigh 0.3 of the whole training set by default).
3. **Measure**: the planted cue's true effects before and after (``probe.world.true_effects``: rendered scenes that
   differ only in the cue) and the accuracy on the classifier's own distribution and on decorrelated scenes.
4. **Re-audit** the fine-tuned classifier with the demo's settings and ``--confirm-like RUN`` (the run's tests on
   the run's seeds), then ``probe compare RUN AFTER``: the cue's change, on shared pairs, with a test.

Everything is written under ``--out``: ``balance/`` (the dataset), ``finetuned.pt2`` (+ sidecars), ``after/`` (the
re-audit), ``compare/`` and ``loop.json`` (the figures). ``--no-reaudit`` stops after step 3.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def balance_images(folder: Path, labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept images of a balance dataset (manifest.csv) and their class indices."""
    import csv

    from PIL import Image

    rows = [r for r in csv.DictReader(open(folder / "manifest.csv", encoding="utf-8")) if r["kept"] == "True"]
    images = [torch.from_numpy(np.array(Image.open(folder / r["path"]).convert("RGB"))).permute(2, 0, 1).float() / 255
              for r in rows]
    return torch.stack(images), torch.tensor([labels.index(r["class_name"]) for r in rows])


def rebuild(path: Path) -> tuple[torch.nn.Module, dict]:
    """A saved world classifier as a trainable module (timm net in its Thumbnail), and its recipe (.bias.json)."""
    from probe.world.classifiers import Thumbnail, build_classifier

    recipe = json.loads(path.with_suffix(".bias.json").read_text())
    config = recipe["config"]
    net = build_classifier(config["arch"])
    model = Thumbnail(net, config["pool"]) if config["pool"] > 1 else net
    model.load_state_dict(dict(torch.export.load(str(path)).state_dict))
    return model.eval(), recipe


def training_distribution(recipe: dict, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` scenes drawn as the classifier's training scenes were (its bias, strength and hidden objects)."""
    from probe.world.classifiers import _render, sample_biased_attributes

    config = recipe["config"]
    rng = np.random.default_rng(seed)
    attrs = sample_biased_attributes(n, config["bias"], config["strength"], rng)
    if config.get("hide", 0) > 0:
        attrs["size"] = np.where(rng.random(n) < config["hide"], 1e-6, attrs["size"])
    return _render(attrs, seed + 1), torch.as_tensor(attrs["shape"])


def finetune_last_layer(model: torch.nn.Module, mean, std, train: tuple, balance: tuple, *, steps: int = 300,
                        lr: float = 1e-2, balance_weight: float = 1.0, batch_size: int = 256, seed: int = 0):
    """Retrain only the final linear layer (``get_classifier()``) on precomputed features: the mean cross-entropy of
    a training batch plus ``balance_weight`` x that of the balance images. Returns the model (changed in place)."""
    torch.manual_seed(seed)
    net = model.net if hasattr(model, "net") else model
    head = net.get_classifier()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    @torch.no_grad()
    def features(images: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(images), 512):
            x = (images[i:i + 512] - mean) / std
            x = F.avg_pool2d(x, model.pool) if hasattr(model, "pool") else x
            out.append(net.forward_head(net.forward_features(x), pre_logits=True))
        return torch.cat(out)

    model.eval()  # batch-norm statistics stay as trained
    f_train, y_train = features(train[0]), train[1]
    f_bal, y_bal = features(balance[0]), balance[1]
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, len(y_train), (batch_size,))
        loss = F.cross_entropy(head(f_train[idx]), y_train[idx]) + balance_weight * F.cross_entropy(head(f_bal), y_bal)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    head.requires_grad_(False)
    return model.eval()


def planted_effects(path: Path, cls: str, cue: str, counters: list[str] | None, n: int) -> dict:
    """The true necessity (against the finding's counters) and sufficiency effects of the cue, by rendering."""
    import probe
    from probe.world.truth import true_effects

    truth = true_effects(probe.load_classifier(str(path)), n=n)
    return {"necessity": truth.effect(cls, cue, "necessity", counters), "sufficiency": truth.effect(cls, cue, "sufficiency")}


def accuracies(path: Path, recipe: dict) -> dict:
    """Accuracy on the classifier's own (biased) distribution and on decorrelated scenes, and per class."""
    from probe.world.classifiers import evaluate_classifier, load_world_classifier

    return evaluate_classifier(load_world_classifier(path), recipe["bias"], recipe["strength"], n=1200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished shapes-world run (`probe demo`)")
    parser.add_argument("--balance", default="star:grass", help="CLASS:CUE, a finding's cue")
    parser.add_argument("--per-class", type=int, default=48, help="balance images per class and role")
    parser.add_argument("--train-images", type=int, default=4000, help="scenes re-rendered from the training recipe")
    parser.add_argument("--balance-weight", type=float, default=0.3,
                        help="weight of the balance images' loss (the bundled biased star, 48 per class and role: 0.3 "
                             "cut the true necessity effect 0.45 -> 0.09 at -0.5 accuracy points, 1.0 to -0.02 at -2.8)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--truth-n", type=int, default=200, help="scenes per shape for the truth table")
    parser.add_argument("--no-reaudit", action="store_true", help="stop after the truth table and accuracies")
    parser.add_argument("--out", type=Path, default=Path("runs/loop"))
    a = parser.parse_args()

    from probe.balance import generate_balance, plan_balance
    from probe.run import RunDir
    from probe.world.classifiers import save_world_classifier

    a.out.mkdir(parents=True, exist_ok=True)
    figures: dict = {"run": str(a.run), "balance": a.balance, "seconds": {}}
    clock = time.perf_counter()
    run = RunDir(a.run)
    before = Path(run.read_run_config().audit["model"])
    labels = run.read_labels()
    (target,) = plan_balance(a.run, [a.balance])  # a bad spec fails here, before anything runs
    # 1. the balance dataset
    folder = a.out / "balance"
    if not (folder / "manifest.json").is_file():
        print(generate_balance(a.run, folder, specs=[a.balance], per_class=a.per_class, device="cpu"))
    figures["seconds"]["balance"] = round(time.perf_counter() - clock, 1)
    # 2. the last layer, fine-tuned on the training distribution plus the balance images
    clock = time.perf_counter()
    model, recipe = rebuild(before)
    data = json.loads(before.with_suffix(".data.json").read_text())
    train = training_distribution(recipe, a.train_images, seed=recipe["config"]["seed"] + 100)
    bal = balance_images(folder, labels)
    finetune_last_layer(model, data["mean"], data["std"], train, bal, steps=a.steps, balance_weight=a.balance_weight)
    after = save_world_classifier(model, a.out / "finetuned.pt2", bias=recipe["bias"], strength=recipe["strength"])
    figures["balance_images"] = int(len(bal[1]))
    figures["seconds"]["finetune"] = round(time.perf_counter() - clock, 1)
    # 3. the planted cue's true effects and the accuracies, before and after
    clock = time.perf_counter()
    counters = list(target.counter_values)
    for name, path in (("before", before), ("after", after)):
        acc = accuracies(path, recipe)
        figures[name] = {"truth": planted_effects(path, target.class_name, target.value, counters, a.truth_n),
                         "in_distribution": acc["in_distribution"], "decorrelated": acc["decorrelated"]}
        print(f"{name}: true {target.class_name}/{target.value} necessity {figures[name]['truth']['necessity']:+.3f}, "
              f"sufficiency {figures[name]['truth']['sufficiency']:+.3f}; accuracy on its own distribution "
              f"{acc['in_distribution']:.3f}, decorrelated {acc['decorrelated']:.3f}")
    figures["seconds"]["truth"] = round(time.perf_counter() - clock, 1)
    # 4. the re-audit on the run's seeds, and the comparison
    if not a.no_reaudit:
        from probe.auditing.loop import audit
        from probe.comparison import compare
        from probe.world.demo import DEMO_ANALYSIS, demo_config

        clock = time.perf_counter()
        classes = ",".join(str(m["class_index"]) for _, m in run.finished_classes())  # the run's classes, as audited
        audit(demo_config(out=a.out / "after", model=after, classes=classes,
                          analysis=DEMO_ANALYSIS.replace(confirm_like=str(a.run))), progress=False)
        result = compare(a.run, a.out / "after")
        result.render(a.out / "compare")
        row = result.cues[(result.cues["class_name"] == target.class_name) & (result.cues["cue"] == target.cue)]
        figures["compare"] = row.to_dict(orient="records")
        print(result.summary())
        print(row[["kind", "verdict", "effect_a", "effect_b", "change", "ci_low", "ci_high", "q"]].to_string(index=False))
        figures["seconds"]["reaudit"] = round(time.perf_counter() - clock, 1)
    (a.out / "loop.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"figures: {a.out / 'loop.json'}")


if __name__ == "__main__":
    main()
