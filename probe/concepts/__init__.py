"""Concepts: a zero-shot image–text model (CLIP or SigLIP) that tells which phrases describe an image.

``load_concepts(spec)`` takes a local folder or a hub id and returns a :class:`ConceptModel`, whose ``score``
gives the model's image–text logits and ``choose`` the best of several candidate phrases per image.
``default_concepts(family)`` names the model that shares the generator's text tower; ``KNOWN_CONCEPT_MODELS``
lists public models that work.
"""

from probe.concepts.model import (KNOWN_CONCEPT_MODELS, ConceptError, ConceptModel, check_concepts, default_concepts,
                                  load_concepts)

__all__ = ["ConceptModel", "load_concepts", "check_concepts", "default_concepts", "ConceptError", "KNOWN_CONCEPT_MODELS"]
