"""Training the shapes world's generator, apart from the runtime world (``probe.world`` imports nothing here).

- ``train``: the text-to-image model (VAE, then UNet + text encoder) and the attribute oracles;
  ``python -m probe.world.training.train`` or ``probe world train``
- ``checkpoint``: the training checkpoint and the noise schedulers, shared by ``train`` and ``export``
- ``export``: a checkpoint -> the diffusers StableDiffusionPipeline folder that probe/world/assets/ bundles
- ``fidelity``: oracle accuracy of a generator on held-out caption combinations (``probe world fidelity``)
"""
