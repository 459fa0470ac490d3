"""Seconds per optimisation step and peak memory, row by row, for the settings of issue 9's table.

Nothing is downloaded: the UNet, VAE and text encoder are built from their Stable Diffusion 1.x (or 2.x base)
configs with random weights, the classifier is a torchvision ResNet-50 (or ViT-B/16) with random weights.
Random weights cost what trained ones cost per step, so the figures are the real architecture's. Each row is
one optimisation step as probe takes it (probe/generators/gradient.py + clip + AdamW), except `reference` (the paper
code's loop, from benchmarks/optimizer_speed.py) and `floor` (sampling and decode without gradient).

Usage:
    python benchmarks/gpu_step.py                          # CUDA, SD 1.x at 512 px, fp16, every row
    python benchmarks/gpu_step.py --rows default,max-batch-1 --family sd2 --classifier vit_b_16
    python benchmarks/gpu_step.py --tiny                   # the same code on tiny components on the CPU, in seconds
    python benchmarks/gpu_step.py --json results.json      # the table as JSON too

On CUDA the memory column is torch.cuda.max_memory_allocated over the timed steps (weights included). On a
CPU each row runs in its own process and the column is that process's peak RSS above the RSS it had once the
models were built: the memory one step adds. benchmarks/gpu_run.sh is the one script to run on a GPU machine.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

GIB, MIB = 1024 ** 3, 1024 ** 2
WORDS = "a photo of close-up picture the an on with star dog cat red green blue".split()


@dataclass(frozen=True)
class Row:
    """One line of the table: how the step is taken."""

    name: str
    what: str
    kind: str = "probe"  # probe | reference | floor
    steps: int | None = None  # None: the generator's default (DDIM 15 full size)
    scheduler: str | None = None
    guidance: float | None = None  # None: the generator's default (7.5)
    max_batch: int | str | None = "auto"  # "auto": probe's automatic choice; None: one chunk of the whole batch
    checkpointing: bool = False
    dtype: str | None = None  # None: the run's dtype
    compile: bool = False
    batch_factor: int = 1  # images per step = --batch x this (2: two classes' batches in one, as multi-class would)


ROWS = (  # in the order they run: rows that change the models (bf16, compile) come last
    Row("floor", "sampling + decode without gradient (the cost of the images alone)", kind="floor"),
    Row("reference", "reference loop: batch 1 x N accumulated, grad through the last 2 UNet calls", kind="reference",
        scheduler="pndm", steps=-1),
    Row("pndm", "probe, the reference's sampler", scheduler="pndm", steps=-1),
    Row("default", "probe, defaults (--max-batch automatic)"),
    Row("unchunked", "probe, one chunk of the whole batch (the peak before chunking)", max_batch=None),
    Row("max-batch-1", "probe, --max-batch 1", max_batch=1),
    Row("max-batch-2", "probe, --max-batch 2", max_batch=2),
    Row("checkpointing", "probe, defaults + --gradient-checkpointing (UNet and VAE decoder)", checkpointing=True),
    Row("floor-x2", "floor at twice the images (two classes in one batch)", kind="floor", batch_factor=2),
    Row("default-x2", "probe defaults at twice the images: what optimising two classes in one UNet batch costs",
        batch_factor=2),
    Row("distilled", "probe, 2 sampling steps, no guidance (the cost of a distilled generator)", steps=2, guidance=0.0),
    Row("bf16", "probe, defaults in bf16", dtype="bf16"),
    Row("compile", "probe, defaults + --compile (UNet and VAE decode)", compile=True),
)
ROW_NAMES = tuple(r.name for r in ROWS)


# ---------------------------------------------------------------------- components
# CLIP ViT-L/14's text encoder: SD 1.x's only one, SDXL's first
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              hidden_act="quick_gelu", projection_dim=768)

def _sdxl_configs(size: str) -> dict:
    """SDXL base 1.0's architecture (UNet 2.6 B parameters, CLIP-L + OpenCLIP-bigG, 1024 px), or a tiny one."""
    if size == "full":
        return {
            "unet": dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                         block_out_channels=(320, 640, 1280),
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                         up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                         transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                         cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                         addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816),
            "vae": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=1024, scaling_factor=0.13025,
                        force_upcast=True),
            "text": CLIP_L,
            "text_2": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                           hidden_act="gelu", projection_dim=1280),
            "max_length": 77, "defaults": (15, 5.0), "pndm_steps": 30, "classifier_size": 224,
        }
    return {
        "unet": dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
                     down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                     up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=80,
                     attention_head_dim=4, norm_num_groups=8, use_linear_projection=True,
                     addition_embed_type="text_time", addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=6 * 8 + 16),
        "vae": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                    block_out_channels=(16, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                    up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8, sample_size=128, force_upcast=True),
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
        "text_2": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                       projection_dim=16),
        "max_length": 16, "defaults": (4, 5.0), "pndm_steps": 6, "classifier_size": 64,
    }


def _configs(size: str, family: str) -> dict:
    if family == "sdxl":
        return _sdxl_configs(size)
    if size == "full":
        sd2 = family == "sd2"
        return {
            "unet": dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                         block_out_channels=(320, 640, 1280, 1280),
                         down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                         up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                         cross_attention_dim=1024 if sd2 else 768,
                         attention_head_dim=(5, 10, 20, 20) if sd2 else 8, use_linear_projection=sd2),
            "vae": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512, scaling_factor=0.18215),
            "text": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                         hidden_act="gelu", projection_dim=512) if sd2 else
                    CLIP_L,
            "max_length": 77, "defaults": (15, 7.5), "pndm_steps": 30, "classifier_size": 224,
        }
    # tiny: a small UNet and text encoder; a narrow VAE decoder at 128 px, whose activations dominate a step's
    # memory as the real decoder's do, so the peak-RSS rows show what chunking saves.
    return {
        "unet": dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
                     down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                     up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                     attention_head_dim=4, norm_num_groups=8),
        "vae": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                    block_out_channels=(16, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                    up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8, sample_size=128),
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
        "max_length": 16, "defaults": (4, 7.5), "pndm_steps": 6, "classifier_size": 64,
    }


def build_generator(size: str, family: str, device: torch.device, dtype: torch.dtype):
    """A probe Generator over random SD components built from configs (seeded, so every build is the same)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from probe.generators import Generator, SamplingDefaults
    from probe.progress import quiet_hf_libraries
    from probe.generators.tokenizer import write_tokenizer

    quiet_hf_libraries()
    cfg = _configs(size, family)
    torch.manual_seed(0)
    tokenizer = write_tokenizer(Path(tempfile.mkdtemp(prefix="probe-gpu-step-")) / "tokenizer", WORDS)
    tokenizer.model_max_length = cfg["max_length"]
    with torch.device(device):  # weights are created where they run: no 3 GB copy from the CPU
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), max_position_embeddings=cfg["max_length"], bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **cfg["text"]))
        unet = UNet2DConditionModel(**cfg["unet"])
        vae = AutoencoderKL(**cfg["vae"])
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    generator_class = Generator
    if family == "sdxl":  # a second tokenizer and encoder (with projection) and SDXL's pipeline and Generator
        from diffusers import StableDiffusionXLPipeline
        from transformers import CLIPTextModelWithProjection

        from probe.generators.sdxl import SDXLGenerator

        with torch.device(device):
            text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
                vocab_size=len(tokenizer), max_position_embeddings=cfg["max_length"],
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, **cfg["text_2"]))
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                         tokenizer=tokenizer, tokenizer_2=copy.deepcopy(tokenizer), unet=unet,
                                         scheduler=scheduler)
        encoders, generator_class = (text_encoder, text_encoder_2), SDXLGenerator
    else:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        encoders = (text_encoder,)
    for module in (*encoders, unet, vae):
        module.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    steps, guidance = cfg["defaults"]
    return generator_class(pipe, source=f"random {family} ({size})", device=device, dtype=dtype,
                           defaults=SamplingDefaults(steps=steps, guidance_scale=guidance))


class Classifier(torch.nn.Module):
    """A frozen classifier with differentiable preprocessing: [0,1] images -> resize -> normalise -> logits."""

    def __init__(self, net: torch.nn.Module, size: int):
        super().__init__()
        self.net, self.size = net, size
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, images):
        x = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net((x - self.mean) / self.std)


def build_classifier(size: str, name: str, device: torch.device) -> Classifier:
    torch.manual_seed(1)
    if size == "full" and name.startswith("timm:"):  # e.g. timm:vit_base_patch16_224, timm:resnet50
        import timm

        net = timm.create_model(name.removeprefix("timm:"), pretrained=False)
    elif size == "full":
        import torchvision

        net = torchvision.models.get_model(name, weights=None)
    else:
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
                                  torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10))
    return Classifier(net, _configs(size, "sd1")["classifier_size"]).to(device).eval().requires_grad_(False)


# ---------------------------------------------------------------------- one step per row kind
def _probe_step(gen, classifier, vector, optimizer, prompts, seeds, row: Row, steps, max_batch):
    from probe.generators.gradient import token_gradient_step

    labels = torch.zeros(len(seeds), dtype=torch.long, device=gen.device)

    def loss_fn(images, rows):
        logits = classifier(images).float()
        return F.cross_entropy(logits, labels[rows]), logits

    optimizer.zero_grad(set_to_none=True)
    token_gradient_step(gen, prompts, seeds, loss_fn, steps=steps, guidance_scale=row.guidance, grad_steps=1,
                        max_batch=max_batch, scheduler=row.scheduler, gradient_checkpointing=row.checkpointing)
    torch.nn.utils.clip_grad_norm_([vector], 1.0)
    optimizer.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_row(gen, classifier, row: Row, *, batch: int, warmup: int, repeats: int, pndm_steps: int) -> dict:
    """Time ``repeats`` steps after ``warmup`` (median) and read the peak memory of the timed steps."""
    from probe.generators.memory import resolve_max_batch
    from probe.tokens import TokenConfig

    device = gen.device
    steps = pndm_steps if row.steps == -1 else row.steps
    batch *= row.batch_factor
    seeds = list(range(batch))
    guidance = gen.defaults.guidance_scale if row.guidance is None else row.guidance
    max_batch, chosen = row.max_batch, ""
    if max_batch == "auto":
        choice = resolve_max_batch(gen, TokenConfig(batch_size=batch, guidance_scale=guidance))
        max_batch, chosen = choice.max_batch, choice.line()
    if row.kind == "reference":
        from optimizer_speed import reference_step

        token_id = gen.add_token("<ref>", "a", reinitialise=True)
        embedding = gen.text_encoder.get_input_embeddings().weight
        embedding.requires_grad_(True)
        optimizer = torch.optim.AdamW([embedding], lr=5e-3, weight_decay=1e-2)
        prompt = "a photo of a <ref> star"
        step = lambda: reference_step(gen, classifier, optimizer, token_id, prompt, seeds, 0, steps, guidance)  # noqa: E731
    elif row.kind == "floor":
        prompts = ["a photo of a star"] * batch

        def step():
            with torch.no_grad():
                gen.generate(prompts, seeds, steps=steps, guidance_scale=row.guidance)
    else:
        gen.add_token("<bench>", "a", reinitialise=True)
        vector = gen.trainable_token("<bench>")
        optimizer = torch.optim.AdamW([vector], lr=5e-3, weight_decay=0.0)
        prompts = ["a photo of a <bench> star"] * batch
        step = lambda: _probe_step(gen, classifier, vector, optimizer, prompts, seeds, row, steps, max_batch)  # noqa: E731
    first = None
    for i in range(warmup):
        start = time.perf_counter()
        step()
        _sync(device)
        if i == 0:
            first = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    result = {**asdict(row), "images": batch, "steps": steps or gen.defaults.steps, "guidance": guidance, "max_batch": max_batch,
              "chosen": chosen, "seconds": times, "s_per_step": statistics.median(times), "first_step_s": first}
    if device.type == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated(device) / GIB
    if row.kind == "reference":
        gen.text_encoder.get_input_embeddings().weight.requires_grad_(False)
        gen.text_encoder.get_input_embeddings().weight.grad = None
    else:
        for token in ("<bench>",):
            if token in gen.tokenizer.get_vocab():
                gen.commit_token(token)
    return result


# ---------------------------------------------------------------------- the table
def measure(args, rows: list[Row]) -> list[dict]:
    """Every row in this process (CUDA: peak memory is reset per row)."""
    from probe.generators import resolve_dtype

    device = torch.device(args.device)
    run_dtype = resolve_dtype(args.dtype, device)
    cfg = _configs(args.size, args.family)
    classifier = build_classifier(args.size, args.classifier, device)
    gen, results = None, []
    rss_built = None
    for row in rows:
        dtype = resolve_dtype(row.dtype, device) if row.dtype else run_dtype
        if gen is None or gen.dtype != dtype or gen.is_compiled or row.compile:
            gen = None
            _free(device)  # the previous model must be gone before this row's peak is read
            gen = build_generator(args.size, args.family, device, dtype)
            if row.compile:
                gen.compile()
        rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        try:
            first_row = not results  # the process's first steps still pay for CUDA's lazy set-up and autotuning
            result = run_row(gen, classifier, row, batch=args.batch,
                             warmup=args.warmup + (1 if row.compile or first_row else 0),
                             repeats=args.repeats, pndm_steps=cfg["pndm_steps"])
        except torch.OutOfMemoryError as error:  # a row that does not fit is a result; the next rows still run
            result = {**asdict(row), "images": args.batch * row.batch_factor, "steps": row.steps, "guidance": row.guidance,
                      "max_batch": row.max_batch, "oom": str(error).split(".")[0]}
            _free(device)
        result["dtype"] = str(dtype).replace("torch.", "")
        if device.type != "cuda":
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            result["peak_rss_mib"] = peak / MIB
            result["step_rss_mib"] = (peak - rss_built) / MIB
        results.append(result)
        if not args.quiet:
            print(_line(result, device), flush=True)
    return results


def measure_isolated(args, rows: list[Row]) -> list[dict]:
    """Each row in a fresh process, so each row's peak RSS is its own (CPU)."""
    results = []
    for row in rows:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "row.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--size", args.size, "--family", args.family,
                   "--classifier", args.classifier, "--device", args.device, "--batch", str(args.batch),
                   "--warmup", str(args.warmup), "--repeats", str(args.repeats), "--rows", row.name,
                   "--no-isolate", "--quiet", "--json", str(out)]
            if args.dtype:
                cmd += ["--dtype", args.dtype]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-4000:])
                raise SystemExit(f"row {row.name} failed (exit {done.returncode})")
            result = json.loads(out.read_text())["rows"][0]
        results.append(result)
        if not args.quiet:
            print(_line(result, torch.device(args.device)), flush=True)
    return results


def _free(device: torch.device) -> None:
    gc.collect()  # a dropped pipeline holds reference cycles: collect them, or its weights count in the next peak
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _line(r: dict, device: torch.device) -> str:
    if r.get("oom"):
        return f"| {r['name']} | {r['what']} | {r['images']} images | {r['max_batch']} | - | out of memory: {r['oom']} |"
    mb = "one chunk" if r["max_batch"] in (None, "") else f"{r['max_batch']}"
    memory = (f"{r['peak_gib']:.2f} GiB peak" if device.type == "cuda" else
              f"{r['step_rss_mib']:.0f} MiB RSS added by the step ({r['peak_rss_mib']:.0f} MiB peak)")
    sampling = f"{r.get('images', '?')} images, {(r['scheduler'] or 'ddim').upper()} {r['steps']}, " + (
        f"guidance {r['guidance']:g}" if r["guidance"] > 1 else "no guidance")
    text = f"| {r['name']} | {r['what']} | {sampling} | {mb} | {r['s_per_step']:.3f} s/step | {memory} |"
    if r.get("compile"):
        text += f" first step {r['first_step_s']:.1f} s (compiling) |"
    return text


def header(args) -> str:
    device = torch.device(args.device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    import diffusers

    return (f"# probe gpu_step: {card}; torch {torch.__version__}, diffusers {diffusers.__version__}; "
            f"{args.family} {args.size} size (random weights), {args.batch} images/step, classifier "
            f"{args.classifier if args.size == 'full' else 'tiny CNN'}; median of {args.repeats} steps after "
            f"{args.warmup} warm-up")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny components on the CPU (same code path, seconds)")
    parser.add_argument("--size", choices=("full", "tiny"), default=None)
    parser.add_argument("--family", choices=("sd1", "sd2", "sdxl"), default="sd1",
                        help="sdxl: SDXL base's architecture at 1024 px (no `reference` row: the paper's loop is SD 1.x)")
    parser.add_argument("--classifier", default="resnet50", help="torchvision model name (resnet50, vit_b_16) or timm:NAME (timm:vit_base_patch16_224)")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--dtype", default=None, help="fp16 (default on CUDA), fp32 (default on CPU) or bf16")
    parser.add_argument("--batch", type=int, default=5, help="images per optimisation step")
    parser.add_argument("--rows", default=None, help=f"comma-separated subset of: {', '.join(ROW_NAMES)}")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="each row in its own process (default on CPU, for per-row peak RSS)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.size, args.device = args.size or "tiny", args.device or "cpu"
    args.size = args.size or "full"
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = args.rows.split(",") if args.rows else [n for n in ROW_NAMES
                                                    if not (n == "compile" and args.device == "cpu")
                                                    and not (n == "reference" and args.family == "sdxl")]
    unknown = [n for n in names if n not in ROW_NAMES]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROW_NAMES)}")
    rows = [r for r in ROWS if r.name in names]
    isolate = args.isolate if args.isolate is not None else args.device == "cpu"
    if not args.quiet:
        print(header(args), flush=True)
        print("| row | what | sampling | --max-batch | s/step | memory |\n|---|---|---|---|---|---|", flush=True)
    results = measure_isolated(args, rows) if isolate else measure(args, rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header(args), "rows": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
