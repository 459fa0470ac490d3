"""AuditConfig: every setting of one audit, typed, from the CLI (or a notebook) to the loop; saved as config.json.

It nests the typed settings of each part: ``TokenConfig`` (the token optimisation), ``AnalysisConfig`` (the
findings), ``GateConfig`` (``--max-effect``) and ``ScaleConfig`` (where the classes run).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from probe.analysis.config import AnalysisConfig
from probe.errors import ProbeError, RunError, settings_from_dict
from probe.gate import GateConfig
from probe.auditing.scale import ScaleConfig
from probe.token_config import TokenConfig

__all__ = ["AuditConfig"]


@dataclass(frozen=True)
class AuditConfig:
    """Everything ``probe audit`` needs; saved as config.json in the run directory."""

    model: str
    out: str
    classes: str = "all"
    generator: str | None = None
    arch: str | None = None
    labels: str | None = None
    trust_pickle: bool = False
    multi_label: bool = False  # `--multi-label`: each class's logit through its own sigmoid (probe.classifiers)
    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    eval_model: str | None = None
    eval_arch: str | None = None
    device: str = "auto"
    dtype: str | None = None
    compile: bool = False  # torch.compile the UNet and VAE decode of the gradient step (Generator.compile)
    retry_failed: bool = False
    analyze: bool = True
    report: bool = True
    token: TokenConfig = field(default_factory=TokenConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    gate: GateConfig | None = None  # `--max-effect`: check the findings at the end (probe.gate)
    scale: ScaleConfig = field(default_factory=ScaleConfig)  # where the classes run (local, Ray, a shard)
    # `--budget`: the analysis's device time ("2h", "90m") or images ("5000img"), turned into analysis.max_images by
    # the audit from the cost model (probe/auditing/cost.py) before any model loads
    budget: str | None = None

    def __post_init__(self):
        if not str(self.model).strip():
            raise RunError("--model is empty; pass a classifier file, folder or package.module:function")
        if not str(self.out).strip():
            raise RunError("--out is empty; pass a folder for the run, e.g. runs/my-audit")
        if self.eval_arch is not None and self.eval_model is None:
            raise RunError(f"--eval-arch {self.eval_arch!r} names the architecture of --eval-model, which is not given; "
                           "add --eval-model FILE or drop --eval-arch")
        if not isinstance(self.token, TokenConfig):
            raise RunError("AuditConfig.token must be a TokenConfig")
        if isinstance(self.analysis, dict):  # from JSON or a notebook: typed here, checked by AnalysisConfig
            object.__setattr__(self, "analysis", AnalysisConfig.from_dict(self.analysis))
        if not isinstance(self.analysis, AnalysisConfig):
            raise RunError("AuditConfig.analysis must be a probe.analysis.AnalysisConfig")
        if isinstance(self.gate, dict):
            object.__setattr__(self, "gate", GateConfig.from_dict(self.gate))
        if self.gate is not None and not isinstance(self.gate, GateConfig):
            raise RunError("AuditConfig.gate must be a probe.gate.GateConfig or None")
        if isinstance(self.scale, dict):
            object.__setattr__(self, "scale", ScaleConfig.from_dict(self.scale))
        if not isinstance(self.scale, ScaleConfig):
            raise RunError("AuditConfig.scale must be a probe.auditing.scale.ScaleConfig")
        if self.budget is not None:
            from probe.auditing.budget import Budget

            Budget.parse(self.budget)  # a bad --budget is one line now, not after the tokens

    def to_dict(self) -> dict:
        data = asdict(self)
        data["token"] = self.token.to_dict()
        data["analysis"] = self.analysis.to_dict()
        return data

    @classmethod
    def saved(cls, run_config) -> "AuditConfig":
        """The AuditConfig an audit saved (``RunConfig.audit``, config.json's ``audit``), typed: read back with the
        settings' one policy (``from_dict``). A RunError naming config.json when it does not read back; a command
        changes what it must with ``dataclasses.replace(AuditConfig.saved(saved), ...)``."""
        try:
            return cls.from_dict(run_config.audit)
        except (ProbeError, TypeError, ValueError) as error:  # JSON values of the wrong type fail as TypeError
            raise RunError(f"config.json's audit settings do not read back ({error}); re-run the audit into a new "
                           "--out") from error

    @classmethod
    def from_dict(cls, data: dict) -> "AuditConfig":
        data = settings_from_dict(cls, data, "audit settings", RunError)
        data["token"] = TokenConfig.from_dict(data.get("token", {}))
        for key in ("mean", "std"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)
