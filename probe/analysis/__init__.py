"""Analysis: from a run directory to attributions and quantified findings.

The entry point is :func:`analyze_run`; the building blocks are public too:
attributions (captum), cue lists with sufficiency and necessity tests, token
shift and nearest words, cross-attention object masks, paired bootstrap stats.
"""

from probe.analysis.attention import (
    CrossAttentionCapture,
    attention_iou,
    denoising_attention_maps,
    capture_cross_attention,
    mask_iou,
    object_mask,
    off_object_share,
    token_positions,
)
from probe.analysis.attributions import METHODS, AttributionConfig, AttributionResult, attribute, choose_layer, overlay, save_overlays
from probe.analysis.cues import Carrier, Cue, cue_necessity, cue_sufficiency, cues_from_vocabulary, default_cues, load_cues, world_cues
from probe.analysis.errors import AnalysisError
from probe.analysis.findings import AnalysisConfig, Finding, Findings, analysis_config, analyze_run, rank_findings, read_findings, write_findings
from probe.analysis.stats import Effect, Thresholds, bootstrap_columns, paired_bootstrap
from probe.analysis.token_shift import ClipScorer, nearest_words, token_shift

__all__ = [
    "AnalysisConfig",
    "AnalysisError",
    "AttributionConfig",
    "AttributionResult",
    "Carrier",
    "ClipScorer",
    "CrossAttentionCapture",
    "Cue",
    "Effect",
    "Finding",
    "Findings",
    "METHODS",
    "Thresholds",
    "analysis_config",
    "analyze_run",
    "attention_iou",
    "attribute",
    "bootstrap_columns",
    "capture_cross_attention",
    "choose_layer",
    "cue_necessity",
    "cue_sufficiency",
    "cues_from_vocabulary",
    "default_cues",
    "denoising_attention_maps",
    "load_cues",
    "mask_iou",
    "nearest_words",
    "object_mask",
    "off_object_share",
    "overlay",
    "paired_bootstrap",
    "rank_findings",
    "read_findings",
    "save_overlays",
    "token_positions",
    "token_shift",
    "world_cues",
    "write_findings",
]
