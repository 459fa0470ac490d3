"""What a concept model costs per generated image: the public CLIP and SigLIP models probe suggests, each built at
full size from its published architecture with random weights (nothing is downloaded; speed does not depend on
the weights), scored through probe's own ``ConceptModel`` exactly as an audit's intervention check uses it.

    .venv/bin/python benchmarks/concept_cost.py --tiny                  # CPU, small configs: the plumbing
    python3 benchmarks/concept_cost.py --device cuda --json out.json    # a GPU machine (benchmarks/gpu_run.sh)

Per model:

1. build the architecture from its config (``ARCHITECTURES``: hidden sizes, layers, heads, patch and image size
   of the public checkpoint's config.json) with random weights, on ``--device``, float32 as ``load_concepts``
   loads it; its image processor as the checkpoint's (CLIP: shortest edge 224 and a centre crop; SigLIP: 384 x
   384); the tokenizer is the bundled world concept model's (a CLIP tokenizer: the phrases' token counts, not
   their words, set the cost, and text embeddings are cached per phrase anyway);
2. embed the text phrases of a 1000-class check once (1000 object phrases and 60 cue phrases; cold);
3. score ``--images`` generated-size images (512 x 512, in [0, 1], on the CPU as the lab holds them) against
   those phrases at ``ConceptModel``'s default batch of 16 and at 64: seconds per image, median of ``--repeats``
   after one warm-up, the image processor's resizing included (what an audit pays; on the device where the
   processor can: ``preprocess_on_device``);
4. the model alone on already-processed pixels at batch 64 (what the GPU costs without the CPU's resizing), and
   the peak GPU memory.

Prints a markdown table; ``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The public checkpoints' architectures (their config.json), as (kind, vision, text, projection, image size).
ARCHITECTURES: dict[str, dict] = {
    "openai/clip-vit-base-patch32": dict(kind="clip", image=224, patch=32, projection=512, act="quick_gelu",
                                         vision=(768, 12, 12, 3072), text=(512, 12, 8, 2048, 77)),
    "openai/clip-vit-large-patch14": dict(kind="clip", image=224, patch=14, projection=768, act="quick_gelu",
                                          vision=(1024, 24, 16, 4096), text=(768, 12, 12, 3072, 77)),
    "laion/CLIP-ViT-H-14-laion2B-s32B-b79K": dict(kind="clip", image=224, patch=14, projection=1024, act="gelu",
                                                  vision=(1280, 32, 16, 5120), text=(1024, 24, 16, 4096, 77)),
    "google/siglip-so400m-patch14-384": dict(kind="siglip", image=384, patch=14, act="gelu_pytorch_tanh",
                                             vision=(1152, 27, 16, 4304), text=(1152, 27, 16, 4304, 64)),
}
#: --tiny: the same four kinds of model, small enough for a CPU test (the vocabularies stay the public ones).
TINY = {name: dict(arch, vision=(32, 2, 2, 64), text=(32, 2, 2, 64, arch["text"][4]), projection=16)
        for name, arch in ARCHITECTURES.items()}


def build(name: str, arch: dict, device: str):
    """(the model with random weights on ``device``, its processor) for one architecture."""
    import torch
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizerFast, SiglipConfig,
                              SiglipImageProcessor, SiglipModel)

    vh, vl, vn, vi = arch["vision"]
    th, tl, tn, ti, positions = arch["text"]
    tokenizer = CLIPTokenizerFast.from_pretrained(str(ROOT / "probe" / "world" / "assets" / "concepts"))
    vision = dict(hidden_size=vh, num_hidden_layers=vl, num_attention_heads=vn, intermediate_size=vi,
                  image_size=arch["image"], patch_size=arch["patch"], hidden_act=arch["act"])
    text = dict(hidden_size=th, num_hidden_layers=tl, num_attention_heads=tn, intermediate_size=ti,
                max_position_embeddings=positions, vocab_size=49408 if arch["kind"] == "clip" else 32000,
                hidden_act=arch["act"], bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    with torch.device(device):
        if arch["kind"] == "clip":
            config = CLIPConfig(vision_config=vision, text_config=text, projection_dim=arch["projection"])
            model = CLIPModel(config)
            images = CLIPImageProcessor(size={"shortest_edge": arch["image"]},
                                        crop_size={"height": arch["image"], "width": arch["image"]})
        else:
            config = SiglipConfig(vision_config=vision, text_config=dict(text, projection_size=th))
            model = SiglipModel(config)
            images = SiglipImageProcessor(size={"height": arch["image"], "width": arch["image"]})
    return model.float().eval(), SimpleNamespace(image_processor=images, tokenizer=tokenizer)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(name: str, arch: dict, *, device: str, n_images: int, repeats: int, n_objects: int,
            dtypes: tuple[str, ...]) -> list[dict]:
    """One row per dtype (the same random weights, converted in place: float32 first)."""
    import torch

    from probe.concepts import ConceptModel

    model, processor = build(name, arch, device)
    params = sum(p.numel() for p in model.parameters())
    objects = [f"a photo of a class{i}" for i in range(n_objects)]
    cues = [f"a photo of something on background{i}" for i in range(60)]
    images = torch.rand(n_images, 3, 512, 512)
    on_device = "device" in getattr(getattr(processor.image_processor, "valid_kwargs", None), "__annotations__", {})
    rows = []
    for dtype in dtypes:
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        concepts = ConceptModel(model, processor, name=name, device=device, dtype=dtype)
        # 2. the text phrases of a 1000-class check, once
        _sync(device)
        start = time.perf_counter()
        concepts.embed_texts(objects + cues)
        _sync(device)
        row = {"model": name, "kind": arch["kind"], "dtype": dtype, "params_m": round(params / 1e6, 1),
               "image_px": arch["image"], "preprocess_on_device": on_device, "text_phrases": len(objects) + len(cues),
               "text_s": round(time.perf_counter() - start, 3)}
        # 3. the product's path: the image processor (on the device where it can), the towers, text cached
        for batch in (16, 64):
            concepts.batch_size = batch
            concepts.score(images[:batch], objects + cues)  # warm-up
            times = []
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                concepts.score(images, objects + cues)
                _sync(device)
                times.append(time.perf_counter() - start)
            row[f"s_per_image_b{batch}"] = round(statistics.median(times) / n_images, 5)
        # 4. the model alone on processed pixels
        pixels = processor.image_processor(images=list(images[:64]), return_tensors="pt", do_rescale=False,
                                           input_data_format="channels_first")["pixel_values"]
        pixels = pixels.to(device, concepts.dtype)
        with torch.no_grad():
            model.get_image_features(pixel_values=pixels)
            times = []
            for _ in range(repeats):
                _sync(device)
                start = time.perf_counter()
                model.get_image_features(pixel_values=pixels)
                _sync(device)
                times.append(time.perf_counter() - start)
        row["model_only_s_per_image_b64"] = round(statistics.median(times) / pixels.shape[0], 5)
        if device.startswith("cuda"):
            row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
        rows.append(row)
        print(json.dumps(row), flush=True)
        del concepts
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return rows


def table(rows: list[dict]) -> str:
    head = ("| model | dtype | params | image px | s/image (batch 16) | s/image (batch 64) | model only, batch 64 | "
            "text phrases, once | peak GPU memory |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['model']} | {r['dtype']} | {r['params_m']}M | {r['image_px']} | {r['s_per_image_b16']:.4f} | "
                     f"{r['s_per_image_b64']:.4f} | {r['model_only_s_per_image_b64']:.4f} | {r['text_s']:.2f} s | "
                     f"{str(r.get('peak_gpu_mib', '-')) + ' MiB' if 'peak_gpu_mib' in r else '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="small configs on the CPU: check the plumbing")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default=",".join(ARCHITECTURES), help="comma-separated names from ARCHITECTURES")
    ap.add_argument("--dtypes", default="float32,float16", help="on a GPU: the precisions to measure, float32 first")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    import torch

    device = "cpu" if a.tiny else a.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: run with --tiny on a CPU", file=sys.stderr)
        return 2
    archs = TINY if a.tiny else ARCHITECTURES
    names = [n.strip() for n in a.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in archs]
    if unknown:
        print(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(archs)}", file=sys.stderr)
        return 2
    dtypes = ("float32",) if device == "cpu" else tuple(d.strip() for d in a.dtypes.split(",") if d.strip())
    rows = []
    for name in names:
        rows += measure(name, archs[name], device=device, n_images=8 if a.tiny else a.images,
                        repeats=1 if a.tiny else a.repeats, n_objects=20 if a.tiny else 1000, dtypes=dtypes)
    print(table(rows))
    if a.json:
        env = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
               "torch": torch.__version__, "transformers": __import__("transformers").__version__}
        a.json.write_text(json.dumps({"environment": env, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
