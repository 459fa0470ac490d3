"""Analysis: from a run directory to attributions and findings a reviewer can act on.

One algorithm per module, each with one verb:

===================  ==========================================================================
module               what it does
===================  ==========================================================================
``engine``           ``analyze_run``: the numbered sequence of the steps below
``class_evidence``   per class: attributions, nearest words, attention IoU, off-object
``config``           ``AnalysisConfig``: every setting, typed, from the CLI to the engine
``cues``             cue lists (curated default, a file, or a domain's vocabulary)
``lab``              generate once per (prompt, seed), check the intervention, classify, keep evidence
``sufficiency``      does adding a cue to other objects raise P(class)?
``necessity``        does swapping the cue for a neutral counter lower P(class)?
``token_shift``      what did the token add? (concept scorer on token vs baseline images)
``off_object``       how much attribution lies outside the object?
``attributions``     captum attributions and overlays
``attention``        cross-attention maps and object masks
``stats``            sign-flip tests and intervals, paired proportions, FDR, the thresholds
``finding``          the Finding record, ranking, sentences, I/O
``retest``           after the audit: re-measure a finding, test a user's hypothesis (``measure_cue``)
===================  ==========================================================================

The analysis knows nothing of the shapes world: a domain hands its cues, scorer and masks in through
``probe.domains``.
"""

from probe.analysis.attention import (
    CrossAttentionCapture,
    attention_iou,
    capture_cross_attention,
    denoising_attention_maps,
    mask_iou,
    object_mask,
    off_object_share,
    token_positions,
)
from probe.analysis.attributions import AttributionConfig, AttributionResult, attribute, choose_layer, overlay, save_overlays
from probe.analysis.config import METHODS, AnalysisConfig
from probe.analysis.cues import Carrier, Cue, cues_from_vocabulary, default_cues, load_cues
from probe.analysis.engine import analyze_run
from probe.analysis.errors import AnalysisError
from probe.analysis.finding import FINDING_KINDS, Finding, Findings, rank_findings, read_findings, write_findings
from probe.analysis.lab import Arm, ConceptCheck, Lab
from probe.analysis.necessity import measure_necessity
from probe.analysis.retest import CueTest, RunContext, measure_cue, remeasure
from probe.analysis.sample import Sample
from probe.analysis.stats import Effect, Thresholds, describe_rule, fdr, paired_effect, paired_proportions, sign_flip_test
from probe.analysis.sufficiency import measure_sufficiency
from probe.analysis.token_shift import ClipScorer, nearest_words, read_concepts, shift_samples

__all__ = [
    "AnalysisConfig", "AnalysisError", "Arm", "AttributionConfig", "AttributionResult", "Carrier", "ClipScorer",
    "ConceptCheck", "CrossAttentionCapture", "Cue", "Effect", "FINDING_KINDS", "Finding", "Findings", "Lab", "METHODS",
    "CueTest", "RunContext", "Sample", "Thresholds", "analyze_run", "measure_cue", "remeasure", "attention_iou", "attribute", "capture_cross_attention", "choose_layer",
    "cues_from_vocabulary", "default_cues", "denoising_attention_maps", "describe_rule", "fdr", "load_cues",
    "mask_iou", "measure_necessity", "measure_sufficiency", "nearest_words", "object_mask", "off_object_share",
    "overlay", "paired_effect", "paired_proportions", "rank_findings", "read_concepts", "read_findings",
    "save_overlays", "shift_samples", "sign_flip_test", "token_positions", "write_findings",
]
