"""The ``probe`` command: thin typer commands that validate flags, build a config and call the API.

Known errors (``ProbeError``) print as one line with the next step to try; set ``PROBE_DEBUG=1`` to
see the traceback. Exit codes: 0 all classes done, 1 some classes failed, 2 bad input, 3 the gate failed
(`probe check`, `probe audit --max-effect`: a passing finding above the limit), 4 the gate is undecided (nothing
in the run could pass or fail), 130 interrupted (Ctrl-C), 143 stopped by SIGTERM (a batch scheduler's time limit or
preemption: handled as Ctrl-C is, finished work kept).
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from probe.display import terminal_safe
from probe.errors import ProbeError

app = typer.Typer(help="Audit what an image classifier has learned, with discriminative class tokens.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)  # help paragraphs rewrapped to the terminal (rich mode kept the docstrings' line breaks)
console = Console()
err_console = Console(stderr=True)


def _floats3(text: Optional[str], flag: str) -> Optional[tuple[float, float, float]]:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        values = ()
    if len(values) == 1:  # one value for every channel, as a data config's single number is read
        values = values * 3
    if len(values) != 3:
        raise ProbeError(f"{flag} {text!r} must be one number or three, e.g. {flag} 0.485,0.456,0.406")
    return values  # type: ignore[return-value]


@app.command()
def audit(
    model: str = typer.Option(..., "--model", "-m", help="Classifier: .pt2, TorchScript, state dict (+--arch), HF folder, package.module:function, or a pickle with --trust-pickle."),
    classes: str = typer.Option("all", "--classes", "-c", help="'all', names, indices, ranges (0-9), WordNet ids of an ImageNet-1k classifier (n01440764) or @file."),
    generator: Optional[str] = typer.Option(None, "--generator", "-g", help="Diffusers folder, hub id, alias (sd14, sd15, sd21, sd-turbo, sd15-lcm, sdxl, sdxl-turbo), 'world', or 'world:infidelity=0.15' (the world failing like a real generator at that rate). Default: sd14 (CompVis/stable-diffusion-v1-4, DDIM 15 steps)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<model name>). Re-running resumes it."),
    arch: Optional[str] = typer.Option(None, help="Architecture for a state dict: timm:NAME or torchvision:NAME."),
    labels: Optional[str] = typer.Option(None, help="Labels: .txt, .json, .csv file, or 'imagenet'."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow unpickling a whole nn.Module (runs arbitrary code from the file)."),
    multi_label: bool = typer.Option(False, "--multi-label", help="The classifier scores each class with its own sigmoid (a multi-label tagger): P(class) = sigmoid(its logit), an image is the class above 0.5. A one-logit classifier is binary without it."),
    input_size: Optional[int] = typer.Option(None, help="Classifier input size (pixels)."),
    mean: Optional[str] = typer.Option(None, help="Normalisation mean, e.g. 0.485,0.456,0.406."),
    std: Optional[str] = typer.Option(None, help="Normalisation std, e.g. 0.229,0.224,0.225."),
    crop_pct: Optional[float] = typer.Option(None, help="Center-crop fraction (1.0: no crop)."),
    interpolation: Optional[str] = typer.Option(None, help="Resize interpolation: bilinear, bicubic, nearest."),
    eval_model: Optional[str] = typer.Option(None, help="A second, held-out classifier whose accuracy is reported beside the first."),
    eval_arch: Optional[str] = typer.Option(None, help="Architecture of --eval-model when it is a state dict."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(None, help="fp32, fp16 or bf16 (default: fp32 on CPU, fp16 on GPU)."),
    scheduler: Optional[str] = typer.Option(None, help="ddim, pndm, euler, euler-ancestral, dpm, ddpm, lcm (default: the alias's own, e.g. DDIM for sd14 and sd15; a folder or hub id keeps the pipeline's own)."),
    steps: Optional[int] = typer.Option(None, help="Sampling steps per image (default: the generator's)."),
    guidance_scale: Optional[float] = typer.Option(None, help="Classifier-free guidance scale."),
    grad_steps: int = typer.Option(1, help="Last UNet calls that carry gradient (paper: 1)."),
    max_steps: int = typer.Option(50, help="Optimisation steps per class at most."),
    batch_size: int = typer.Option(5, help="Images per optimisation step."),
    lr: float = typer.Option(5e-3, help="AdamW learning rate of the token."),
    threshold: float = typer.Option(0.95, help="Stop when the batch's --stop-metric exceeds this (the paper: accuracy > 0.7)."),
    stop_metric: str = typer.Option("target_prob", help="target_prob (mean class probability: every token moves and shows what it adds) or accuracy (the paper)."),
    patience: int = typer.Option(15, help="Stop after this many steps without a better token."),
    min_steps: Optional[int] = typer.Option(None, help="No early stop before this many updates, and keep an updated token (default 3, or --max-steps - 1 when smaller; 0: the paper's rule, which keeps the initial word when the classifier already accepts the baseline images)."),
    paper_stop: bool = typer.Option(False, "--paper-stop", help="The paper's stop rule: accuracy > 0.7, no minimum updates (replaces --stop-metric, --threshold and --min-steps)."),
    objective: str = typer.Option("cross_entropy", help="cross_entropy (the paper) or margin (capped log-probability margin: keeps pushing where the classifier already accepts the images)."),
    init_word: str = typer.Option("a", help="Word to initialise the token from; '@class' uses the class name."),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", help="Prompt template of the class token (repeatable), '{}' where the token and the class name go: your images' domain, e.g. --prompt 'a chest X-ray showing {}'. The first one also carries the cues of the sufficiency tests. Default: 'a photo of a {}', 'a close-up photo of a {}', 'a picture of a {}'."),
    eval_images: int = typer.Option(6, help="Evaluation images per prompt kind, on fresh seeds."),
    max_batch: Optional[int] = typer.Option(None, help="Images per gradient chunk: the grad-carrying UNet calls, decode and classifier run on this many images at a time, each chunk's backward before the next (peak memory follows it). Default: chosen from free memory on CUDA (printed), one chunk elsewhere."),
    gradient_checkpointing: bool = typer.Option(False, help="Trade compute for memory in the UNet and the VAE decoder."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the UNet and VAE decode (once per run). Pays on a GPU when the run is long: on an H200 (SD 1.x, defaults) it compiled for 171 s, then took 0.75 s per step instead of 0.93 s, i.e. it repays itself after about 900 optimisation steps (about 45 classes of 20 steps); not worth it on a CPU."),
    seed: int = typer.Option(0, help="First training seed."),
    retry_failed: bool = typer.Option(False, help="On resume, redo classes that failed before."),
    analyze: bool = typer.Option(True, help="Compute findings (attributions, cues) after the tokens."),
    cues: Optional[str] = typer.Option(None, help="Cue list for the findings (.json or .txt); default: curated list, or the world's attributes."),
    attribution_layer: Optional[str] = typer.Option(None, help="Layer for Grad-CAM (module name); default: chosen automatically."),
    attributions: str = typer.Option("all", help="Attribution methods for the class galleries: 'all' (integrated_gradients, grad_cam, occlusion), a comma-separated subset, or 'none'. Integrated gradients and occlusion take dozens of classifier passes per image: on EfficientNet-Lite0 on a CPU they were 100 of the analysis's 121 s for 2 classes, so a 1000-class CPU run wants grad_cam or none. With 'none' no overlay is saved and the off-object measure uses Grad-CAM (integrated gradients only where no layer can be hooked)."),
    concepts: str = typer.Option("auto", help="Concept model that checks every generated test image (object kept, cue shown) and reads what the token added: a CLIP or SigLIP hub id or local folder; 'auto' = the world's oracles, else openai/clip-vit-large-patch14 (the laion ViT-H/14 for SD 2.x); 'world' = the shapes world's own tiny CLIP; 'none' = unchecked (cue findings are then unverified, never passing)."),
    clip_model: Optional[str] = typer.Option(None, hidden=True, help="Old name of --concepts."),
    fdr_q: float = typer.Option(0.05, help="False discovery rate controlled over the audit's confirmed tests (Benjamini-Yekutieli; above 20 classes per class, Benjamini-Bogomolov)."),
    min_effect: float = typer.Option(0.15, help="Smallest change in probability (or frequency) a finding must show to pass."),
    max_pairs: int = typer.Option(32, help="Fresh image pairs a candidate finding may use to confirm itself (at least 16 decide; one whose "
                                       "interval still holds the --min-effect bar uses them all)."),
    discover: int = typer.Option(3, help="Cues nobody listed to propose per class, from what its token added (phrases of a ~1,000-phrase vocabulary whose concept score rose), tested like the listed cues in the same FDR family; 0: off. Needs a check (oracles or --concepts)."),
    vocabulary: Optional[Path] = typer.Option(None, help="A JSON file of phrase groups added to the discovery vocabulary (shaped like probe/concepts/vocabulary.json)."),
    confirm_like: Optional[Path] = typer.Option(None, help="Another run on the same generator and seeds: confirm its confirmed tests here too, so `probe compare OTHER THIS` can pair them."),
    report: bool = typer.Option(True, help="Render the HTML report at the end."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    max_effect: Optional[float] = typer.Option(None, help="Gate: after the report, exit 3 when a passing finding's |effect| exceeds this, 4 when nothing could pass or fail (as `probe check`)."),
    kinds: Optional[str] = typer.Option(None, help="Gate: finding kinds checked by --max-effect (default sufficiency,necessity,token-shift)."),
    junit: Optional[Path] = typer.Option(None, help="Gate: write the verdict as JUnit XML here (one test case per class)."),
    backend: str = typer.Option("local", help="local (this process) or ray (one Ray worker per GPU or CPU slot, each loading the models once; pip install 'probe-audit[ray]')."),
    address: Optional[str] = typer.Option(None, help="Ray: cluster to join ('auto', or ray://HOST:PORT); default: start a local one."),
    workers: Optional[int] = typer.Option(None, help="Ray: workers to start (default: one per GPU with --gpus-per-worker, else one per CPU)."),
    gpus_per_worker: float = typer.Option(0.0, help="Ray: GPUs each worker holds (1 on GPU machines)."),
    max_retries: int = typer.Option(2, help="Ray: times a class is retried on another worker when its worker dies."),
    shard: Optional[str] = typer.Option(None, help="I/N: run only every N-th class from the I-th (0-based; SLURM arrays, indexed jobs); `probe report RUN_DIR` analyses once all shards are done."),
    budget: Optional[str] = typer.Option(None, help="Cap the analysis: device time (2h, 90m, 600s; converted with the measured throughput of the generator on this device, or, where no row has it, timed here once the models load) or images (5000img). Screening always runs; confirmation goes to the most decisive screens first and stops when the budget is spent (the tests it did not reach stay screening-only)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (images per stage, device time from the measured throughput table) and exit, without loading the generator or writing anything."),
    measure: bool = typer.Option(False, "--measure", help="With --dry-run: load the models and time a few image batches and token steps here, at the audit's settings, so the plan has a time on any device (nothing is written)."),
    val_data: Optional[Path] = typer.Option(None, "--val-data", help="Your labelled images (ImageFolder folder or path,label CSV): after the analysis, confirm each finding on them (as `probe confirm`; --concepts reads the cues)."),
) -> None:
    """Learn a class token per class and write the run directory (tokens, images, metrics, report).

    With --max-effect the findings are checked at the end, as `probe check` does: exit 3 when a passing
    finding is larger than the limit (the run and the report are kept).
    """
    from probe.auditing.loop import AuditConfig, audit as run_audit
    from probe.auditing.scale import ScaleConfig
    from probe.token_config import TokenConfig

    # the token first: a bad --prompt is named as the prompt, not as the carrier it also sets
    token = TokenConfig(**({"templates": tuple(prompt)} if prompt else {}), init_word=init_word, lr=lr,
                        batch_size=batch_size, max_steps=max_steps,
                        **(dict(accuracy_threshold=0.7, stop_metric="accuracy", min_steps=0) if paper_stop else
                           dict(accuracy_threshold=threshold, stop_metric=stop_metric, min_steps=min_steps)),
                        patience=patience, objective=objective, steps=steps, guidance_scale=guidance_scale,
                        grad_steps=grad_steps, max_batch=max_batch, gradient_checkpointing=gradient_checkpointing,
                        scheduler=scheduler, seed=seed, eval_images=eval_images)
    config = AuditConfig(
        model=model, out=str(out or Path("runs") / Path(model.rstrip("/")).stem.replace(":", "-")), classes=classes,
        generator=generator, arch=arch, labels=labels, trust_pickle=trust_pickle, multi_label=multi_label,
        input_size=input_size,
        mean=_floats3(mean, "--mean"), std=_floats3(std, "--std"), crop_pct=crop_pct, interpolation=interpolation,
        eval_model=eval_model, eval_arch=eval_arch, device=device, dtype=dtype, compile=compile, retry_failed=retry_failed,
        analyze=analyze, report=report,
        analysis=_analysis_config(cues=cues, attribution_layer=attribution_layer, concepts=clip_model or concepts, fdr_q=fdr_q,
                                  min_effect=min_effect, max_pairs=max_pairs, confirm_like=confirm_like,
                                  discover=discover, vocabulary=vocabulary, attributions=attributions,
                                  prompts=prompt),
        token=token,
        gate=_gate_config(max_effect, kinds, junit),
        scale=ScaleConfig(backend=backend, address=address, workers=workers, gpus_per_worker=gpus_per_worker,
                          max_retries=max_retries, shard=shard),
        budget=budget,
    )
    if measure and not dry_run:
        raise ProbeError("--measure times this machine for the plan of --dry-run; add --dry-run (a real audit "
                         "measures nothing: it runs)")
    if dry_run:  # the plan only (probe/auditing/cost.py): nothing written; with --measure, the models load to time
        from probe.auditing.loop import dry_run as plan_only

        plan = plan_only(config, console=err_console, measure=measure, val_data=val_data)
        console.print(repr(plan), highlight=False, markup=False, soft_wrap=True)
        return
    result = run_audit(config, progress=not quiet, console=err_console, val_data=val_data)
    if val_data is not None:  # nothing analysed to confirm (None): _finish says why
        from probe.confirm import ClassifierSource, confirm_audit

        confirmation = confirm_audit(result, val_data, concepts=clip_model or concepts,
                                     progress=None if quiet else _progress_line,
                                     source=ClassifierSource(model=model, arch=arch, trust_pickle=trust_pickle,
                                                             device=device))
        if confirmation is not None:
            _result_line(f"on your data: {confirmation.headline()}")
        else:  # the audit says why nothing was analysed; this says what the user's data are waiting for
            _result_line(f"your data were not checked (the run has no complete analysis to confirm); once it has, run "
                         f"`probe confirm {shlex.quote(str(result.run_dir))} --val-data {shlex.quote(str(val_data))}`")
    _finish(result)


def _attribution_methods(text: str) -> tuple[bool, tuple[str, ...] | None]:
    """``--attributions``: (attributions on, methods; None = the default set) from 'all', 'none' or a list."""
    from probe.analysis.config import METHODS

    words = [w.strip().lower().replace("-", "_") for w in str(text).split(",") if w.strip()]
    if words == ["all"]:
        return True, None
    if words == ["none"]:
        return False, None
    unknown = [w for w in words if w not in METHODS]
    if not words or unknown:
        raise ProbeError(f"--attributions {text!r}: give 'all', 'none' or some of {', '.join(METHODS)} "
                         "(comma-separated), e.g. --attributions grad_cam")
    return True, tuple(dict.fromkeys(words))


def _analysis_config(*, cues, attribution_layer, concepts, fdr_q, min_effect, max_pairs, confirm_like=None, discover=3,
                     vocabulary=None, attributions="all", prompts=None):
    from probe.analysis import AnalysisConfig, Thresholds

    thresholds = Thresholds(fdr_q=fdr_q, min_effect=min_effect, weak_effect=min(0.05, min_effect))
    attributions_on, methods = _attribution_methods(attributions)
    return AnalysisConfig(cues=cues or "auto", attribution_layer=attribution_layer, concepts=concepts,
                          attributions=attributions_on, **({"methods": methods} if methods else {}),
                          max_pairs=max_pairs, thresholds=thresholds, discover=discover,
                          **({"carrier_template": prompts[0]} if prompts else {}),  # --prompt: the images' domain
                          vocabulary=str(vocabulary) if vocabulary is not None else None,
                          confirm_like=str(confirm_like) if confirm_like is not None else None)


def _safe(text) -> str:
    """Untrusted text (a run path, a class name) for rich: control characters visible, markup escaped."""
    return escape(terminal_safe(text))


def _result_line(line) -> None:
    """One result line on stdout (a path, a count): untrusted text escaped, never broken at the terminal's width
    (paths are copied from it)."""
    console.print(_safe(line), highlight=False, soft_wrap=True)


def _progress_line(line) -> None:
    """One progress line on stderr: class and cue names are untrusted (markup escaped, control characters visible),
    and a long line is not broken at the terminal's width (80 columns when stderr is a file)."""
    err_console.print(_safe(line), highlight=False, soft_wrap=True)


_interrupt_reported = False  # _finish printed its own "interrupted" line; main() prints the generic one otherwise


def _finish(result) -> None:
    global _interrupt_reported
    print_summary(result.rows, result.token_gain, result.run_dir)
    _result_line(f"run directory: {result.run_dir}")
    if result.report is not None:
        _result_line(f"report: {result.report}")
    if getattr(result, "gate", None) is not None:
        _print_gate(result.gate)
    if result.interrupted:
        how = "stopped by SIGTERM" if _terminated else "interrupted"
        err_console.print(f"{how}: finished classes are kept; run the same command again to resume", style="yellow")
        _interrupt_reported = True
        raise typer.Exit(130)
    for problem in result.problems:
        _error_line(problem)
    if result.failed:
        err_console.print(f"{len(result.failed)} class(es) failed; their errors are in metrics.json "
                          "(re-run with --retry-failed to try them again)", style="red")
    if result.failed or result.problems:
        raise typer.Exit(1)
    if getattr(result, "gate", None) is not None and not result.gate.passed:
        raise typer.Exit(result.gate.exit_code)  # 3: the run is complete and the gate failed


SUMMARY_ROWS = 40  # classes the terminal's table shows; the run's summary.csv has every one


def print_summary(rows: list[dict], gain=None, run_dir=None) -> None:
    """The audit's table, one row per class; the held-out classifier's column only when one was given
    (``--eval-model``), not an empty column on every audit without it. Under it ``gain``, the token's accuracy change
    against the plain prompt paired on the same seeds (``AuditResult.token_gain``), when there is one.

    Above SUMMARY_ROWS classes (an audit of 1000) the table shows that many, those not done first, and a line under
    it says how many more there are and where every class is (``run_dir``'s summary.csv)."""
    from probe.analysis.evaluation import gain_text
    from probe.run import SUMMARY

    hidden: list[dict] = []
    if len(rows) > SUMMARY_ROWS:
        ordered = sorted(rows, key=lambda r: r.get("status") == "done")  # stable: those not done first
        rows, hidden = sorted(ordered[:SUMMARY_ROWS], key=lambda r: r["class_index"]), ordered[SUMMARY_ROWS:]
    table = Table(title="probe audit summary")
    if gain is not None:
        table.caption = f"token acc against baseline acc, paired on the same seeds: {gain_text(gain)}"
    held_out = any(r.get("eval_token_accuracy") not in (None, "") for r in rows)
    columns = ("class", "status", "baseline acc", "token acc") + (("held-out token acc",) if held_out else ()) \
        + ("steps", "seconds")
    for column in columns:
        table.add_column(column, justify="left" if column in ("class", "status") else "right")

    def cell(value, digits=2):
        return "" if value in (None, "") else f"{float(value):.{digits}f}"

    for r in rows:
        held = (cell(r["eval_token_accuracy"]),) if held_out else ()
        table.add_row(_safe(f"{r['class_index']} {r['class_name'] or ''}".strip()), r["status"], cell(r["baseline_accuracy"]),
                      cell(r["token_accuracy"]), *held, str(r["steps"] or ""), cell(r["seconds"], 1))
    console.print(table)
    if hidden:
        undone = sum(r.get("status") != "done" for r in hidden)
        state = f"{undone:,} of them not done" if undone else "all done"
        where = Path(run_dir) / SUMMARY if run_dir is not None else SUMMARY
        _result_line(f"… and {len(hidden):,} more classes ({state}), every class in {where}")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory written by `probe audit`."),
           out: Optional[Path] = typer.Option(None, help="Where to write the report (default RUN_DIR/report)."),
           single_file: bool = typer.Option(False, help="Embed every asset into one HTML file."),
           max_images: int = typer.Option(24, help="Gallery images shown per class."),
           thumb_px: int = typer.Option(256, help="Thumbnail size in pixels."),
           model: Optional[str] = typer.Option(None, "--model", "-m", help="A run made with --shard whose analysis is pending: the classifier to analyse it with (never taken from the run)."),
           generator: Optional[str] = typer.Option(None, "--generator", "-g", help="With --model: the generator the run was made with (never taken from the run)."),
           arch: Optional[str] = typer.Option(None, help="With --model: the architecture of a state-dict classifier (timm:NAME or torchvision:NAME)."),
           trust_pickle: bool = typer.Option(False, "--trust-pickle", help="With --model: allow unpickling a whole nn.Module (runs code from the file); never taken from the run."),
           device: str = typer.Option("auto", help="With --model: auto, cpu, cuda, cuda:N or mps."),
           dtype: Optional[str] = typer.Option(None, help="With --model: fp32, fp16 or bf16."),
           concepts: str = typer.Option("auto", help="With --model: the concept model that checks the analysis's images (as `probe audit --concepts`; never taken from the run)."),
           analyze: bool = typer.Option(True, help="With --model and --generator: analyse a sharded run first when every shard is done and the analysis is missing or older.")) -> None:
    """Re-render the HTML report from a run directory's saved files. Loads no model unless you pass --model and
    --generator: a run directory is data, so nothing in it (config.json included) decides what is loaded or run.
    """
    from probe.progress import warn
    from probe.report import render_report
    from probe.run import RunDir

    RunDir(run_dir).require_config(ProbeError)
    if (model is None) != (generator is None):
        raise ProbeError("--model and --generator go together (the run's analysis needs both); pass both, or neither "
                         "to re-render without analysing")
    if analyze:
        pending = RunDir(run_dir).pending_analysis()
        if pending is not None and model is None:
            from probe.auditing.loop import decide_pending

            # every class measured where it ran (the shards): decided here, from the records, with no model
            pending = None if decide_pending(run_dir, console=err_console) else pending
        if pending is not None and model is None:
            warn(err_console, f"{pending}: the report shows no findings yet; analyse it with `probe report "
                              f"{shlex.quote(str(run_dir))} --model MODEL --generator GENERATOR` (the classifier and "
                              "generator the run was audited with)")
        elif pending is not None:
            from probe.auditing.loop import ModelSources, complete_run

            merged = complete_run(run_dir, ModelSources(model=model, generator=generator, arch=arch,
                                                        trust_pickle=trust_pickle, device=device, dtype=dtype,
                                                        concepts=concepts),
                                  console=err_console)
            for problem in merged.problems:
                _error_line(problem)
            if merged.problems:
                raise typer.Exit(1)
    try:
        path = render_report(run_dir, out=out, single_file=single_file, max_images=max_images, thumb_px=thumb_px)
    except (ProbeError, KeyboardInterrupt):
        raise
    except Exception as error:  # a bug or a damaged file: one line here, the traceback with PROBE_DEBUG=1
        if os.environ.get("PROBE_DEBUG"):
            raise
        raise ProbeError(f"the report for {str(run_dir)!r} failed ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}); rerun with PROBE_DEBUG=1 for the "
                         "traceback and report it") from error
    _result_line(f"report: {path}")


def _gate_config(max_effect: Optional[float], kinds: Optional[str], junit: Optional[Path]):
    """`probe audit`'s gate flags as a GateConfig, or None when --max-effect is not given."""
    from probe.gate import GateConfig

    if max_effect is None:
        if kinds is not None or junit is not None:
            raise ProbeError("--kinds and --junit belong to the gate; add --max-effect (e.g. --max-effect 0.3)")
        return None
    return GateConfig(max_effect=max_effect, kinds=kinds, junit=None if junit is None else str(junit))


def _print_gate(result) -> None:
    """One line per offending finding on stdout, then the verdict (stderr when it failed)."""
    for line in result.lines():
        _result_line(line)
    (console if result.passed else err_console).print(_safe(result.verdict()), highlight=False, soft_wrap=True,
                                                      style=None if result.passed else "red")


@app.command()
def check(run_dir: Path = typer.Argument(..., help="A run directory written by `probe audit` (with its findings)."),
          max_effect: float = typer.Option(..., help="Largest |effect| a passing finding may have (a change in probability, e.g. 0.3)."),
          kinds: Optional[str] = typer.Option(None, help="Finding kinds to check, comma-separated (default sufficiency,necessity,token-shift; off-object: every passing one fails)."),
          classes: Optional[str] = typer.Option(None, "--classes", "-c", help="Check only these audited classes (names, indices, ranges)."),
          junit: Optional[Path] = typer.Option(None, help="Also write the verdict as JUnit XML (one test case per class) to this file."),
          by: str = typer.Option("estimate", help="What is compared with --max-effect: estimate (the point estimate) or upper (the end of the 95% interval farthest from zero)."),
          include_unverified: bool = typer.Option(False, "--include-unverified", help="Count unverified findings (they met the bars, but no concept model or oracle checked their images) as passing."),
          confirmed_only: bool = typer.Option(False, "--confirmed-only", help="Gate only on passing findings `probe confirm` found confirmed on your data (needs its confirmation.json); a class with a passing finding the data could not judge is undecided.")) -> None:
    """Gate a CI job on a run's findings: exit 0 when no passing finding exceeds --max-effect, 3 when one does.

    Each offending finding is printed on one line. Exit codes: 0 passed (some class had a confirmed test that
    could have failed it); 3 a passing finding's |effect| is above the limit; 4 undecided: nothing in the run
    could pass or fail (every class failed or is unfinished, or no confirmed test: only screening-only or
    inconclusive ones, or only unverified ones without --include-unverified); 2 bad input, including a run without
    findings (analysis off or failed) and a damaged run file (one line naming the file and the field). No models
    are loaded.
    """
    from probe.gate import check_by, check_junit_path, check_run

    check_junit_path(junit)  # a wrong --junit fails before the findings are read
    result = check_run(run_dir, max_effect=max_effect, kinds=kinds, classes=classes, by=check_by(by),
                       include_unverified=include_unverified, confirmed_only=confirmed_only)
    if junit is not None:
        result.write_junit(junit)
    _print_gate(result)
    if not result.passed:
        raise typer.Exit(result.exit_code)


@app.command()
def confirm(run_dir: Path = typer.Argument(..., help="A run directory written by `probe audit` (with its findings)."),
            val_data: Path = typer.Option(..., "--val-data", help="Your labelled images: a folder of class subfolders (ImageFolder) or a CSV of path,label rows (paths relative to the CSV, else to the working directory)."),
            concepts: str = typer.Option("auto", help="What reads cue presence on your images: 'auto' = the world's oracles for a world run; else a CLIP or SigLIP hub id or folder (never taken from the run)."),
            model: Optional[str] = typer.Option(None, "--model", "-m", help="The run's classifier (default: the one config.json names, when loading it runs no code)."),
            arch: Optional[str] = typer.Option(None, help="Architecture of a state-dict classifier (timm:NAME or torchvision:NAME)."),
            trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow unpickling a whole nn.Module classifier (runs code from the file); never taken from the run."),
            device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
            min_slice: int = typer.Option(1, help="Fewer images than this in a slice decide nothing (the exact test decides small slices; no verdict ever rests on one image)."),
            report: bool = typer.Option(True, help="Re-render the run's HTML report with the real-data numbers.")) -> None:
    """Check every finding of a run on your own labelled images: confirmed on your data, weaker than the audit's bar, not seen, or contradicted."""
    from probe.confirm import ClassifierSource, ConfirmConfig, confirm_run

    result = confirm_run(run_dir, val_data, source=ClassifierSource(model=model, arch=arch, trust_pickle=trust_pickle,
                                                                     device=device),
                         concepts=concepts, config=ConfirmConfig(min_slice=min_slice),
                         progress=_progress_line)
    for line in result.table().splitlines():
        _result_line(line)
    if report:
        from probe.report import render_report

        _result_line(f"report: {render_report(run_dir)}")


@app.command()
def generate(run_dir: Path = typer.Argument(..., help="A run directory written by `probe audit` (its class tokens)."),
             out: Path = typer.Option(..., "--out", "-o", help="Dataset folder: OUT/<class>/<seed>.png and OUT/manifest.csv/.parquet. Re-running resumes it."),
             classes: str = typer.Option("all", "--classes", "-c", help="Classes of the run: 'all', names, indices or ranges."),
             per_class: int = typer.Option(..., help="Images to keep per class."),
             prompt: Optional[str] = typer.Option(None, help="Prompt template with {token} and optionally {name} (default: the run's first template, e.g. 'a photo of a {token} {name}')."),
             min_prob: Optional[float] = typer.Option(None, help="Keep only images the run's classifier gives their class with at least this probability (and as its top class); tries up to --max-attempts per class."),
             max_attempts: Optional[int] = typer.Option(None, help="Images tried per class at most with --min-prob (default 4 x --per-class)."),
             batch_size: int = typer.Option(8, help="Images per generator batch."),
             model: Optional[str] = typer.Option(None, "--model", "-m", help="The run's classifier at a new path (a moved run)."),
             generator: Optional[str] = typer.Option(None, "--generator", "-g", help="The run's generator at a new path (a moved run)."),
             trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow unpickling a whole nn.Module classifier (runs code from the file); never taken from the run's config."),
             device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
             dtype: Optional[str] = typer.Option(None, help="fp32, fp16 or bf16 (default: fp32 on CPU, fp16 on GPU)."),
             balance: Optional[list[str]] = typer.Option(None, "--balance", help="CLASS:CUE (repeatable): instead of token images, a counterfactual dataset: the class without the cue (its counters stated) and its nearest confusers with it (the other way round for a cue the class avoids: a finding with a negative effect), from plain prompts, each image checked (see probe.balance)."),
             confusers: int = typer.Option(2, help="With --balance: confuser classes per CLASS:CUE that get the cue."),
             concepts: str = typer.Option("auto", help="With --balance: who checks the images: auto (the world's oracles, for a run they checked) or a CLIP/SigLIP hub id or folder."),
             quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")) -> None:
    """Write an ImageFolder training set from a run's class tokens, with a manifest (resumable); with --balance, a
    counterfactual dataset that breaks a finding's shortcut."""
    from probe.generate import GenerateConfig, generate_dataset

    if balance:
        from probe.balance import BalanceConfig, BalanceError, generate_balance

        given = [flag for flag, value in (("--prompt", prompt), ("--min-prob", min_prob), ("--max-attempts", max_attempts),
                                          ("--model", model), ("--trust-pickle", trust_pickle or None))
                 if value is not None] + (["--classes"] if classes != "all" else [])
        if given:
            raise BalanceError(f"{', '.join(given)} do not apply with --balance (its classes come from CLASS:CUE, its "
                               "prompts are plain and its check is --concepts); drop them")
        bal = generate_balance(run_dir, out, config=BalanceConfig(
            specs=tuple(balance), per_class=per_class, confusers=confusers, batch_size=batch_size, concepts=concepts,
            generator=generator, device=device, dtype=dtype), progress=None if quiet else _progress_line)
        for line in bal.lines():
            _result_line(line)
        _result_line(f"balance dataset: {bal.out} ({bal.kept} kept, {bal.dropped} dropped by {bal.checked_by}; "
                     f"manifest: {bal.manifest})")
        return
    config = GenerateConfig(classes=classes, per_class=per_class, prompt=prompt, min_prob=min_prob,
                            max_attempts=max_attempts, batch_size=batch_size, model=model, generator=generator,
                            trust_pickle=trust_pickle, device=device, dtype=dtype)
    result = generate_dataset(run_dir, out, config=config, progress=not quiet, console=err_console)
    for line in result.lines():
        _result_line(line)
    _result_line(f"dataset: {result.out} (manifest: {result.manifest})")


@app.command()
def compare(run_a: Path = typer.Argument(..., help="Run A (before), a run directory of `probe audit`."),
            run_b: Path = typer.Argument(..., help="Run B (after): same generator, seeds and classes."),
            out: Optional[Path] = typer.Option(None, help="Folder for the comparison page (default RUN_B/compare-<A>)."),
            fdr_q: float = typer.Option(0.05, help="False discovery rate over the tested changes (Benjamini-Yekutieli).")) -> None:
    """Compare two audits cue by cue on their shared image pairs: what is gone, new, grew or shrank in B."""
    from probe.comparison import compare as compare_runs
    from probe.report.compare_page import check_out

    if out is not None:
        check_out(run_a, run_b, out)  # never into a run's own files (--out B/report would replace B's report)
    result = compare_runs(run_a, run_b, fdr_q=fdr_q)
    path = result.render(out)
    console.print(result.table())
    console.print(_safe(result.summary()), highlight=False)
    for line in result.skipped:
        _result_line(f"skipped: {line}")
    _result_line(f"comparison: {path}")


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), help="Run directory."),
         classifier: str = typer.Option("biased", help="Bundled shapes-world classifier: biased or clean."),
         max_steps: int = typer.Option(8, help="Optimisation steps per class at most."),
         classes: str = typer.Option("all", "--classes", "-c", help="Which shapes to audit (default: all six)."),
         confirm_like: Optional[Path] = typer.Option(None, help="An earlier demo run: confirm its confirmed tests here too (for `probe compare`)."),
         quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Audit the bundled biased shapes-world classifier with the bundled generator, on the CPU, in minutes."""
    from probe.world.demo import DEMO_ANALYSIS, run_demo

    analysis = DEMO_ANALYSIS.replace(confirm_like=str(confirm_like)) if confirm_like is not None else None
    result = run_demo(out=out, classifier=classifier, max_steps=max_steps, classes=classes, progress=not quiet,
                      console=err_console, analysis=analysis)
    _finish(result)


@app.command()
def version() -> None:
    """Print probe's version and the libraries it runs on."""
    from probe.auditing.loop import environment_versions

    for name, value in environment_versions().items():
        console.print(f"{name} {value}", highlight=False)


def _print_version(wanted: bool) -> None:
    if wanted:
        version()
        raise typer.Exit()


@app.callback()
def _options(show_version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                               help="Print probe's version and the libraries it runs on, and exit.")) -> None:
    """Audit what an image classifier has learned, with discriminative class tokens."""


def _mount_world() -> None:
    try:
        from probe.world.cli import world_app
    except ImportError:
        return
    app.add_typer(world_app, name="world", help="The bundled shapes world: train its model and classifiers, check fidelity.")


_mount_world()


def _click_classes() -> tuple[type, type]:
    """typer's ClickException and Abort: typer >= 0.29 bundles its own click, older typer uses the click package."""
    click_exception = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    return click_exception, typer.Abort


def main() -> None:
    """Console-script entry point: one-line errors for known problems, tracebacks with PROBE_DEBUG=1.

    Exit codes: 0 done; 1 some classes, the analysis or the report failed; 2 bad input (a usage error or a
    ProbeError, one line); 3 the gate failed (`probe check`, or `probe audit --max-effect` once the run is
    complete: a passing finding above the limit; 1 wins over 3); 4 the gate is undecided (nothing in the run
    could pass or fail: no class finished, or no confirmed test); 130 interrupted.
    """
    global _interrupt_reported, _terminated
    click_exception, abort = _click_classes()
    debug = bool(os.environ.get("PROBE_DEBUG"))
    _interrupt_reported = _terminated = False
    previous = _catch_sigterm()
    try:
        code = app(standalone_mode=False)
    except ProbeError as error:
        if debug:
            raise
        _error_line(str(error))
        sys.exit(2)
    except (KeyboardInterrupt, abort):  # older click turns Ctrl-C into Abort
        _interrupted()
        sys.exit(143 if _terminated else 130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except click_exception as error:  # usage errors: unknown flag, missing option, a value of the wrong type
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()  # `probe` alone: the help, and the usage exit code
            sys.exit(2)
        if debug:
            raise
        _error_line(f"{error.format_message()} (see `{' '.join(['probe', _command(), '--help']).replace('  ', ' ')}`)")
        sys.exit(error.exit_code if error.exit_code else 2)
    except OSError as error:  # a file or folder probe was pointed at cannot be used
        if debug:
            raise
        where = f" {error.filename!r}" if getattr(error, "filename", None) else ""
        _error_line(f"cannot use{where}: {error.strerror or error}; check the path and its permissions "
                    "(PROBE_DEBUG=1 shows the traceback)")
        sys.exit(2)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if code == 130 and not _interrupt_reported:  # typer >= 0.29 turns Ctrl-C into a returned 130, silently
        _interrupted()
    if code == 130 and _terminated:
        code = 143
    if isinstance(code, int) and code:
        sys.exit(code)


_terminated = False  # a SIGTERM stopped the command (reported as such, exit 143)


def _catch_sigterm():
    """SIGTERM (SLURM's time limit or preemption, `kill`, a container stopping) handled as Ctrl-C is: the audit
    stops at once, keeps its finished work and says so, where the default action killed it without a word. Returns
    the handler it replaced (None where it cannot install one: not the main thread, no SIGTERM)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return None

    def stop(signum, frame):
        global _terminated
        _terminated = True
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, stop)
    except (ValueError, OSError):
        return None


def _interrupted() -> None:
    how = "stopped by SIGTERM" if _terminated else "interrupted (Ctrl-C)"
    err_console.print(f"{how}: finished work is kept; run the same command again to resume where it "
                      "can (audit, demo, generate)", style="yellow", highlight=False, soft_wrap=True)


def _command() -> str:
    names = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback is not None}
    names |= {g.name for g in app.registered_groups if g.name}
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    return words[0] if words and words[0] in names else ""


def _error_line(message: str) -> None:
    line = terminal_safe(" ".join(message.replace("\0", "\\0").split()))  # one line, no control characters
    err_console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
