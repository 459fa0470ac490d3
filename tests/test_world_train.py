"""The world training script: a few tiny steps on the CPU, checkpoint, resume, export."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from probe.errors import ProbeError  # noqa: E402
from probe.world import models  # noqa: E402
from probe.world.training.train import TrainConfig, load_state, sample_training_attributes, train, _heldout_mask  # noqa: E402


@pytest.fixture
def tiny_models(monkeypatch):
    monkeypatch.setattr(models, "VAE_CONFIG", dict(models.VAE_CONFIG, block_out_channels=(8, 8), norm_num_groups=4))
    monkeypatch.setattr(models, "UNET_CONFIG", dict(models.UNET_CONFIG, block_out_channels=(8, 16, 16), layers_per_block=1,
                                                   norm_num_groups=4, attention_head_dim=2))
    monkeypatch.setattr(models, "TEXT_CONFIG", dict(models.TEXT_CONFIG, hidden_size=16, intermediate_size=32,
                                                   num_hidden_layers=1, num_attention_heads=2))
    monkeypatch.setattr(models, "OracleNet", lambda n, width=32: torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, n)))
    import probe.world.oracles as oracles_mod

    monkeypatch.setattr(oracles_mod, "OracleNet", models.OracleNet)
    monkeypatch.setattr(models, "UNET_CONFIG", dict(models.UNET_CONFIG, cross_attention_dim=16))


def test_training_attributes_exclude_heldout_triples():
    import numpy as np

    a = sample_training_attributes(3000, np.random.default_rng(0))
    assert len(a["shape"]) == 3000 and not _heldout_mask(a).any()


def test_config_is_validated():
    with pytest.raises(ProbeError, match="caption_dropout"):
        TrainConfig(caption_dropout=1.5)


def test_tiny_training_checkpoints_resumes_and_exports(tmp_path, tiny_models):
    from diffusers import StableDiffusionPipeline

    from probe.world.training.export import export_pipeline

    cfg = dict(out=str(tmp_path / "ck"), device="cpu", vae_steps=2, oracle_steps=2, vae_batch=4, oracle_batch=4,
               unet_batch=4, unet_steps=3, bank_size=16, bank_chunk=16, reserve_s=0.0, budget_s=120.0,
               parts=str(tmp_path / "parts"))
    state = train(TrainConfig(**cfg))
    assert state["vae_step"] == 2 and state["oracle_step"] == 2 and state["unet_step"] == 3
    assert list((tmp_path / "parts").glob("state.pt.part*"))
    # resume: the finished stages are skipped, the UNet continues from its step
    state = train(TrainConfig(**dict(cfg, unet_steps=5)))
    assert state["unet_step"] == 5
    # a checkpoint that only exists as parts (as it comes back from the GPU machine) is reassembled
    (tmp_path / "only_parts").mkdir()
    for p in (tmp_path / "parts").glob("state.pt.part*"):
        (tmp_path / "only_parts" / p.name).write_bytes(p.read_bytes())
    assert load_state(tmp_path / "only_parts")["unet_step"] == 5
    # a checkpoint kept only in --parts is resumed from there (it used to start again and overwrite the parts)
    (tmp_path / "ck" / "state.pt").unlink()
    state = train(TrainConfig(**dict(cfg, unet_steps=6)))
    assert state["unet_step"] == 6 and "'unet_step': 5}" in (tmp_path / "parts" / "train.log").read_text()
    assert load_state(tmp_path / "parts")["unet_step"] == 6

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    for target, message in ((tmp_path / "mine", "not a world pipeline"), (tmp_path / "ck", "holds the checkpoint"),
                            (tmp_path, "holds the checkpoint")):  # `--export .` deleted the working directory
        with pytest.raises(ProbeError, match=message):
            export_pipeline(tmp_path / "ck", target)
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep" and (tmp_path / "ck" / "state.pt").is_file()
    export_pipeline(tmp_path / "ck", tmp_path / "pipe")
    out = export_pipeline(tmp_path / "ck", tmp_path / "pipe")  # an earlier export is replaced
    assert out == tmp_path / "pipe" and not list(tmp_path.glob(".pipe.partial-*"))
    pipe = StableDiffusionPipeline.from_pretrained(str(out), dtype=torch.float32)
    img = pipe("a photo of a star", num_inference_steps=2, output_type="pt").images
    assert img.shape == (1, 3, 32, 32)
