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
``checks``           intervention checks: a domain's oracles or a concept model (CLIP/SigLIP)
``sufficiency``      does adding a cue to other objects raise P(class)?
``necessity``        does swapping the cue for a neutral counter lower P(class)?
``token_shift``      what did the token add? (the check's readings on token vs baseline images)
``off_object``       how much attribution lies outside the object?
``attributions``     captum attributions and overlays
``attention``        cross-attention maps and object masks
``stats``            sign-flip tests and intervals, paired proportions, FDR (statistics only)
``policy``           what the statistics decide: ``Thresholds``, passes / weak / inconclusive
``plan``             what the audit and ``retest`` share: classes, lab setup, carriers, confirmation rounds
``finding``          the Finding record, ranking, sentences, I/O
``retest``           after the audit: re-measure a finding, test a user's hypothesis (``measure_cue``)
===================  ==========================================================================

The analysis knows nothing of the shapes world: a domain hands its cues, scorer and masks in through
``probe.domains``.

The public names below are imported lazily (on first use), so that reading findings or settings
(``probe.analysis.finding``, ``probe.analysis.config``) does not load the attribution code (captum).
"""

from __future__ import annotations


from probe.lazy import lazy_attributes

_LAZY = {
    **dict.fromkeys(("CrossAttentionCapture", "attention_iou", "capture_cross_attention", "denoising_attention_maps",
                     "mask_iou", "object_mask", "off_object_share", "token_positions"), "probe.analysis.attention"),
    **dict.fromkeys(("AttributionConfig", "AttributionResult", "attribute", "choose_layer", "overlay", "save_overlays"),
                    "probe.analysis.attributions"),
    **dict.fromkeys(("METHODS", "AnalysisConfig"), "probe.analysis.config"),
    **dict.fromkeys(("Carrier", "Cue", "cues_from_vocabulary", "default_cues", "load_cues"), "probe.analysis.cues"),
    "analyze_run": "probe.analysis.engine",
    "AnalysisError": "probe.analysis.errors",
    **dict.fromkeys(("FINDING_KINDS", "Finding", "Findings", "rank_findings", "read_findings", "write_findings"),
                    "probe.analysis.finding"),
    **dict.fromkeys(("Arm", "Lab"), "probe.analysis.lab"),
    **dict.fromkeys(("OracleCheck", "ConceptModelCheck", "concept_cues"), "probe.analysis.checks"),
    "measure_necessity": "probe.analysis.necessity",
    **dict.fromkeys(("Thresholds", "describe_rule"), "probe.analysis.policy"),
    **dict.fromkeys(("CueTest", "RunContext", "measure_cue", "remeasure"), "probe.analysis.retest"),
    "Sample": "probe.analysis.sample",
    **dict.fromkeys(("Effect", "fdr", "paired_effect", "paired_proportions", "sign_flip_test"), "probe.analysis.stats"),
    "measure_sufficiency": "probe.analysis.sufficiency",
    **dict.fromkeys(("nearest_words", "read_concepts", "shift_samples"), "probe.analysis.token_shift"),
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__():
    return sorted(set(globals()) | set(__all__))
