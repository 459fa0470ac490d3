"""Turn a training checkpoint into the bundled diffusers StableDiffusionPipeline folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from probe.errors import ProbeError
from probe.world import models

DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 4.0


def _load_components_in_one_dtype(folder: Path) -> None:
    """Make the plain ``StableDiffusionPipeline.from_pretrained(folder)`` work.

    diffusers upcasts the UNet and VAE to float32 unless told otherwise, while transformers 5 loads the text
    encoder in the dtype its config names (the stored one); mixed, the first call fails with "mat1 and mat2 must
    have the same dtype". Naming float32 in the text encoder's config makes every component agree by default;
    the weights stay in their smaller stored dtype, and an explicit ``torch_dtype`` still wins.
    """
    path = folder / "text_encoder" / "config.json"
    config = json.loads(path.read_text())
    for key in ("dtype", "torch_dtype"):
        if key in config:
            config[key] = "float32"
    path.write_text(json.dumps(config, indent=2) + "\n")


def export_pipeline(checkpoint_dir: str | Path, out: str | Path, dtype: torch.dtype = torch.float16,
                    oracles_out: str | Path | None = None) -> Path:
    """Write ``out`` as a StableDiffusionPipeline folder (weights in ``dtype``) from the checkpoint.

    Also writes ``probe_generator.json`` (default steps, guidance, image size) and, when
    ``oracles_out`` is given, the oracle weights as safetensors there.
    """
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from probe.world.training.checkpoint import load_state, make_scheduler

    checkpoint_dir, out = Path(checkpoint_dir), Path(out)
    _check_target(checkpoint_dir, out)
    state = load_state(checkpoint_dir)
    if state is None or "unet_ema" not in state:
        raise ProbeError(f"no trained checkpoint in {str(checkpoint_dir)!r}: run `python -m probe.world.training.train --out {checkpoint_dir}` first")
    tokenizer = CLIPTokenizer.from_pretrained(checkpoint_dir / "tokenizer")
    vae = models.build_vae()
    vae.load_state_dict(state["vae"])
    vae.register_to_config(scaling_factor=float(state["scaling_factor"]))
    unet = models.build_unet()
    unet.load_state_dict(state["unet_ema"])
    text = models.build_text_encoder(tokenizer)
    text.load_state_dict(state["text_ema"])
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=make_scheduler("ddim"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    final, out = out, out.parent / f".{out.name}.partial-{os.getpid()}"  # written beside, swapped in when complete
    if out.exists():
        shutil.rmtree(out)
    pipe.to(dtype).save_pretrained(out, safe_serialization=True)
    _load_components_in_one_dtype(out)
    for name in ("vocab.json", "merges.txt"):  # the classic CLIP files too, for older transformers
        if (checkpoint_dir / "tokenizer" / name).exists():
            shutil.copy(checkpoint_dir / "tokenizer" / name, out / "tokenizer" / name)
    fid = state.get("final_fidelity") or []
    note = (
        "probe's shapes world: a tiny latent diffusion model of 32x32 renders (shapes, colors, backgrounds, "
        "corner tags), trained from scratch with probe.world.training.train; "
        f"{state.get('unet_step', 0)} UNet steps; weights stored as {str(dtype).replace('torch.', '')}, cast to "
        "float32 on CPU. Held-out fidelity (oracle accuracy): "
        + "; ".join(f"steps {f['steps']} g {f['guidance']}: shape {f['shape']:.3f} color {f['color']:.3f} "
                    f"background {f['background']:.3f} tag {f['tag']:.3f}" for f in fid)
    )
    (out / "probe_generator.json").write_text(json.dumps({
        "default_steps": DEFAULT_STEPS,
        "guidance_scale": DEFAULT_GUIDANCE,
        "image_size": 32,
        "negative_prompt": "",
        "note": note,
    }, indent=2) + "\n")
    if oracles_out is not None:
        from probe.world.oracles import Oracles, save_oracles

        oracles = Oracles()
        oracles.load_state_dict(state["oracles"])
        save_oracles(oracles, oracles_out)
    if final.exists():  # an earlier export (_check_target let nothing else through)
        shutil.rmtree(final)
    os.replace(out, final)
    return final


def _is_pipeline(folder: Path) -> bool:
    return (folder / "model_index.json").is_file() and (folder / "probe_generator.json").is_file()


def _check_target(checkpoint_dir: Path, out: Path) -> None:
    """An export replaces only an earlier export: never the checkpoint (or a folder holding it), a file, a link, or a
    folder with other files in it (``--export .`` used to delete the working directory)."""
    target, checkpoint = out.resolve(), checkpoint_dir.resolve()
    if target == checkpoint or target in checkpoint.parents:
        raise ProbeError(f"--export {str(out)!r} is or holds the checkpoint {str(checkpoint_dir)!r}, which the export "
                         "would delete; pass a new folder")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ProbeError(f"--export {str(out)!r} is a file or a link, not a folder; pass a new folder")
    if out.is_dir() and any(out.iterdir()) and not _is_pipeline(out):
        raise ProbeError(f"--export {str(out)!r} exists and is not a world pipeline (no model_index.json and "
                         "probe_generator.json); pass a new folder, or an earlier export to replace")
