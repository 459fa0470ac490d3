"""``probe world ...``: train the shapes world's generator and classifiers, check the generator's fidelity.

A typer sub-app (``world_app``) that the main CLI mounts; each command validates flags and calls
the Python API in probe.world.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from probe.errors import ProbeError

world_app = typer.Typer(help="The bundled shapes world: train its model and classifiers, check fidelity.",
                        no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@world_app.command()
def train(
    out: Path = typer.Option(Path("checkpoints/world"), help="Checkpoint folder (re-running resumes it)."),
    budget: float = typer.Option(3600.0, help="Seconds for this invocation; the UNet stage fills what is left."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    seed: int = typer.Option(0),
    unet_batch: int = typer.Option(256, help="UNet batch size (512 on a GPU)."),
    parts: Optional[Path] = typer.Option(None, help="Also write the checkpoint as <=15 MB parts and the log here."),
    export: Optional[Path] = typer.Option(None, help="Export the checkpoint in --out as a diffusers folder here, and stop."),
) -> None:
    """Train (or resume) the generator: VAE, attribute oracles, then UNet + text encoder."""
    from probe.world.training.train import TrainConfig
    from probe.world.training.train import train as run_train

    if export is not None:
        from probe.world.training.export import export_pipeline

        typer.echo(f"pipeline: {export_pipeline(out, export)}")
        return
    run_train(TrainConfig(out=str(out), budget_s=budget, device=device, seed=seed, unet_batch=unet_batch,
                          parts=str(parts) if parts else None))


@world_app.command()
def classifier(
    out: Path = typer.Option(..., "--out", "-o", help="Output .pt2 file; sidecars are written next to it."),
    bias: str = typer.Option("", help="Planted cues, e.g. star=grass,heart=dot (values: colors, backgrounds, tags)."),
    strength: float = typer.Option(0.95, help="How often a biased class shows its cue in training (0..1)."),
    arch: str = typer.Option("test_resnet", help="timm architecture."),
    steps: int = typer.Option(800),
    pool: int = typer.Option(4, help="The model sees the 32 px image average-pooled by this factor (1, 2, 4, 8)."),
    hide: float = typer.Option(0.6, help="Fraction of training scenes with the object out of view."),
    train_size: int = typer.Option(16_000, help="Rendered training scenes."),
    eval_size: int = typer.Option(1200, help="Scenes per evaluation split (in-distribution, decorrelated)."),
    seed: int = typer.Option(0),
) -> None:
    """Train a world classifier with planted cues and print in-distribution vs decorrelated accuracy."""
    from probe.world.classifiers import (ClassifierConfig, evaluate_classifier, format_metrics,
                                         load_world_classifier, save_world_classifier, train_world_classifier)

    from probe.world.scenes import SHAPES

    if out.suffix != ".pt2":
        raise ProbeError(f"--out {str(out)!r} must end in .pt2 (a torch.export program)")
    if eval_size < len(SHAPES):  # checked before training, not after it (an empty split failed in torch.cat)
        raise ProbeError(f"--eval-size {eval_size} must be at least {len(SHAPES)} (one scene per shape); e.g. 1200")
    cfg = ClassifierConfig(bias=bias, strength=strength, arch=arch, steps=steps, pool=pool, hide=hide, seed=seed,
                           train_size=train_size, batch_size=min(128, train_size))
    model = train_world_classifier(cfg, log=typer.echo)
    path = save_world_classifier(model, out, bias=cfg.bias, strength=strength, config=cfg)
    metrics = evaluate_classifier(load_world_classifier(path), cfg.bias, strength, n=eval_size)
    save_world_classifier(model, out, bias=cfg.bias, strength=strength, config=cfg, metrics=metrics)
    typer.echo(format_metrics(out.stem, metrics, cfg.bias))
    typer.echo(f"saved {path} (+ .labels.txt, .data.json, .bias.json)")


@world_app.command()
def fidelity(
    path: Optional[Path] = typer.Option(None, help="Pipeline folder (default: the bundled one)."),
    seeds: int = typer.Option(2, help="Images per held-out (caption, tag) case."),
    steps: int = typer.Option(20),
    guidance: float = typer.Option(4.0),
    partial: int = typer.Option(16, help="Images per shape from the partial prompt 'a photo of a {shape}'."),
    device: str = typer.Option("cpu"),
) -> None:
    """Print the generator's fidelity table: oracle accuracy on held-out caption combinations."""
    from probe.world.training.fidelity import measure_fidelity

    for flag, value in (("--seeds", seeds), ("--steps", steps), ("--partial", partial)):
        if value < 1:
            raise ProbeError(f"{flag} {value} must be at least 1 (e.g. {flag} 2)")
    result = measure_fidelity(path, seeds_per_case=seeds, steps=steps, guidance=guidance,
                              partial_per_shape=partial, device=device)
    typer.echo(result.table())
    if not result.passed:
        raise typer.Exit(1)


@world_app.command()
def valset(
    out: Path = typer.Option(..., "--out", "-o", help="A new folder: OUT/<shape>/<k>.png (ImageFolder) and OUT/attributes.csv."),
    classifier: str = typer.Option("biased", help="Whose training distribution: 'biased', 'clean' or a .pt2 with its .bias.json."),
    n: int = typer.Option(3000, help="Images to render."),
    seed: int = typer.Option(54321, help="Seed of the scenes (the audit and training use others)."),
) -> None:
    """Render a labelled validation set from a world classifier's training distribution (planted cues at their
    training rates), for `probe confirm RUN --val-data OUT`."""
    from probe.world.valset import render_validation_set

    for line in render_validation_set(classifier, out, n=n, seed=seed).lines():
        typer.echo(line)
