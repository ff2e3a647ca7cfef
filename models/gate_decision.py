"""The promotion gate: promote a challenger only when it is better beyond noise. Pure, no I/O.

Both models are scored on the same holdout rows (the challenger's holdout, even when the champion
was trained on an older dataset version). Rules:

* no champion: promote when the challenger beats a dummy baseline (class prior / mean) on the
  gate metric by at least ``baseline_margin`` and the paired 95% interval's lower bound is above 0;
* a champion: promote when the gain is at least ``min_gain`` AND the lower bound of a paired
  bootstrap 95% interval of the gain is above zero AND no slice (categorical level with enough
  rows) loses more than ``slice_tolerance``.

* the trusted holdout (every challenger, when the train flow has one): the challenger is ALSO scored
  on the holdout of a dataset version whose labels were ingested from a file, which no feedback can
  change (see :class:`TrustedScores` and :mod:`models.gate_scoring` for which version). With a champion,
  the challenger is rejected when it is worse there than the champion by more than
  ``trusted_tolerance``; without one, when it does not beat the dummy baseline there. This holds
  whatever the newest rows say: the newest rows of a retrain built from feedback carry labels anyone
  with the token could have forged, and the gate's own holdout is exactly those rows.

Gains are signed so that positive is better, for higher-is-better (AUC) and lower-is-better
(log loss, RMSE) metrics alike. Multiclass scores ((n, k) probabilities) use the same rules with
macro one-vs-rest metrics (see :mod:`models.evaluate`). Without an explicit gate metric
(``MLOOP_GATE_METRIC`` or a flow override) the metric fits the target's class balance
(:func:`models.target.default_gate_metric`: PR AUC for a rare positive class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from copy import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from mloop.core.settings import Settings
from models.evaluate import direction, metrics_for, weighted_metric
from models.target import (
    class_codes,
    class_counts,
    default_gate_metric,
    infer_classes,
    is_multiclass_scores,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from mloop.core.contract.model import Task


GATE_SETTING_PREFIX = "gate_"
"""Settings field ``gate_<name>`` (env ``MLOOP_GATE_<NAME>``) defines GateConfig field ``<name>``."""


def _setting(name: str) -> FieldInfo:
    """The Settings field ``gate_<name>``: its default, description and bounds, defined once there."""
    return copy(Settings.model_fields[GATE_SETTING_PREFIX + name])


class GateConfig(BaseModel):
    """Gate parameters. The settable ones are the ``MLOOP_GATE_*`` settings' fields (same default,
    description and bounds); the gate adds its own bounds on top."""

    metric: Annotated[str, _setting("metric")]
    min_gain: Annotated[float, _setting("min_gain"), Field(ge=0)]
    slice_tolerance: Annotated[float, _setting("slice_tolerance"), Field(ge=0)]
    resamples: Annotated[int, _setting("resamples")]
    baseline_margin: Annotated[float, _setting("baseline_margin"), Field(ge=0)]
    trusted_tolerance: Annotated[float, _setting("trusted_tolerance"), Field(ge=0)]
    seed: int = Field(default=0, description="Seed of the bootstrap resampling.")
    min_slice_rows: int = Field(
        default=100, ge=1, description="Smallest categorical level checked as a slice."
    )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> GateConfig:
        """The gate configured by ``settings``, then the ``overrides`` that are not None (e.g. a GateParams
        form). Only the ``gate_<name>`` settings set explicitly (environment, a Settings argument) are
        passed on; the others are the same defaults (:func:`_setting`). So ``model_fields_set`` holds
        what was chosen, which is how :meth:`metric_for` tells a chosen metric from the default."""
        base: dict[str, object] = {
            name: getattr(settings, GATE_SETTING_PREFIX + name)
            for name in cls.model_fields
            if GATE_SETTING_PREFIX + name in settings.model_fields_set
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(base)

    def with_suggested_metric(self, metric: str | None) -> GateConfig:
        """This config, gating on ``metric`` (the dataset contract's suggestion) unless a metric was
        set explicitly (setting or override) or there is no suggestion."""
        if metric is None or "metric" in self.model_fields_set:
            return self
        return self.model_copy(update={"metric": metric})

    def metric_for(self, task: str, class_counts: Mapping[Any, int] | None = None) -> str:
        """The gate metric: the one set explicitly; else, given the target's ``class_counts``, the one
        that fits the data (:func:`~models.target.default_gate_metric`); else the configured default.
        A metric that does not apply to the task falls back to the task's default (roc_auc / rmse)."""
        if "metric" not in self.model_fields_set and class_counts is not None:
            # as a Task: the rule scores anything but classification as regression (rmse)
            kind: Task = "classification" if task == "classification" else "regression"
            return default_gate_metric(kind, class_counts)
        return (
            self.metric
            if self.metric in metrics_for(task)
            else ("roc_auc" if task == "classification" else "rmse")
        )


def overrides_model(
    model: type[BaseModel], name: str, doc: str, exclude: frozenset[str] = frozenset()
) -> type[BaseModel]:
    """A model with ``model``'s fields (minus ``exclude``), each optional with default None and the
    same type, bounds and description: a form of overrides where an empty field keeps the default."""
    fields: dict[str, Any] = {}
    for field, info in model.model_fields.items():
        if field in exclude:
            continue
        # a type form built at run time (Any: the checker has no type for a computed annotation)
        bounded: Any = (
            Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        )
        fields[field] = (bounded | None, Field(default=None, description=info.description))
    return create_model(name, __doc__=doc, **fields)


if TYPE_CHECKING:
    GateParams = BaseModel  # the checker knows the class below only as some BaseModel
else:
    GateParams = overrides_model(
        GateConfig,
        "GateParams",
        "Promotion gate overrides; empty fields use the MLOOP_GATE_* settings.",
        exclude=frozenset({"seed"}),
    )
"""The train flow's gate form (Prefect UI): every GateConfig field but the seed, optional."""


class SliceComparison(BaseModel):
    column: str
    level: str
    rows: int
    challenger: float
    champion: float
    loss: float = Field(
        description="How much worse the challenger is on this slice (positive = worse)."
    )
    blocked: bool


@dataclass(frozen=True)
class TrustedScores:
    """Inputs of the trusted check: labels and scores on the trusted holdout (pure data, no I/O).

    ``champion`` is None when there is no champion (the baseline rule applies); ``baseline`` are the
    dummy baseline's scores, fitted on the trusted version's training side. ``same_holdout``: the
    trusted holdout is the gate's own holdout (the challenger trained on an ingested version).
    """

    dataset_md5: str
    y: np.ndarray
    challenger: np.ndarray
    champion: np.ndarray | None
    baseline: np.ndarray
    same_holdout: bool = False


class TrustedComparison(BaseModel):
    """The challenger against the champion (or the dummy baseline) on the trusted holdout."""

    dataset_md5: str = Field(description="The ingested dataset version whose holdout was scored.")
    rows: int
    reference: Literal["champion", "baseline"]
    challenger: float = Field(description="The challenger's gate metric on the trusted holdout.")
    reference_value: float = Field(
        description="The champion's (or the baseline's) gate metric there."
    )
    loss: float = Field(
        description="How much worse the challenger is there (positive = worse), signed by the metric."
    )
    tolerance: float = Field(
        description="Largest loss accepted against a champion (0 against the baseline)."
    )
    passed: bool
    same_holdout: bool = Field(
        default=False, description="The trusted holdout is the gate's own holdout."
    )

    def verdict(self, metric: str) -> str:
        """One sentence: where, both scores, the loss and the verdict."""
        where = f"trusted holdout (ingested version {self.dataset_md5[:8]}, {self.rows} rows)"
        scores = f"{metric} {self.challenger:.4f} vs {self.reference} {self.reference_value:.4f}"
        if self.reference == "champion":
            rule = f"{self.loss:+.4f} worse (tolerance {self.tolerance})"
        else:
            rule = f"{-self.loss:+.4f} over the dummy baseline (must be > 0)"
        if self.passed:
            return f"{where}: {scores}, {rule}: passed"
        why = "" if self.same_holdout else "; the newest rows' labels are not trusted"
        return f"REJECTED on the {where}: {scores}, {rule}{why}"


class GateReport(BaseModel):
    """The gate's decision and its evidence (rendered as markdown, stored as JSON and tags)."""

    model_name: str
    challenger_version: str | None = None
    champion_version: str | None = None
    decision: Literal["promote", "reject"]
    reasons: list[str]
    metric: str
    higher_is_better: bool
    reference: Literal["champion", "baseline"]
    challenger_value: float
    reference_value: float
    gain: float = Field(
        description="Challenger minus reference, signed so that positive is better."
    )
    ci_low: float
    ci_high: float
    resamples: int
    holdout_rows: int
    challenger_metrics: dict[str, float] = Field(default_factory=dict)
    reference_metrics: dict[str, float] = Field(default_factory=dict)
    slices: list[SliceComparison] = Field(default_factory=list)
    trusted: TrustedComparison | None = Field(
        default=None,
        description="The check on the trusted holdout (None: not run, see ``reasons``).",
    )
    config: GateConfig

    @property
    def promoted(self) -> bool:
        return self.decision == "promote"

    def interval(self) -> dict[str, float]:
        """The gain and its 95% interval (the version's ``mloop.gate_metrics`` tag)."""
        return {"gain": self.gain, "ci_low": self.ci_low, "ci_high": self.ci_high}

    def trusted_metrics(self) -> dict[str, float]:
        """Both values of the gate metric on the trusted holdout and the loss (empty: not run)."""
        if self.trusted is None:
            return {}
        return {
            f"trusted_challenger_{self.metric}": self.trusted.challenger,
            f"trusted_reference_{self.metric}": self.trusted.reference_value,
            "trusted_loss": self.trusted.loss,
        }

    def tag_metrics(self) -> dict[str, float]:
        """The version's ``mloop.gate_metrics`` tag: the interval and the trusted comparison."""
        return {**self.interval(), **self.trusted_metrics()}

    def audit_metrics(self) -> dict[str, float]:
        """What a promotion's audit record keeps: the interval, both values of the gate metric and, when
        run, the trusted comparison."""
        return {
            **self.interval(),
            f"challenger_{self.metric}": self.challenger_value,
            f"reference_{self.metric}": self.reference_value,
            **self.trusted_metrics(),
        }

    def summary(self) -> str:
        """One line: verdict, gain with interval, first reason."""
        return (
            f"{self.decision}: {self.metric} {self.challenger_value:.4f} vs {self.reference} {self.reference_value:.4f} "
            f"(gain {self.gain:+.4f}, 95% CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}]); {'; '.join(self.reasons)}"
        )

    def to_markdown(self) -> str:
        ref = (
            f"{self.reference} v{self.champion_version}"
            if self.reference == "champion"
            else "dummy baseline"
        )
        chal = f"challenger v{self.challenger_version}" if self.challenger_version else "challenger"
        lines = [
            f"# Promotion gate: {self.model_name} — **{self.decision.upper()}**",
            "",
            *[f"- {r}" for r in self.reasons],
            "",
            f"Gate metric **{self.metric}** ({'higher' if self.higher_is_better else 'lower'} is better), "
            f"{self.holdout_rows} holdout rows, paired bootstrap with {self.resamples} resamples (seed {self.config.seed}).",
            "",
            f"| metric | {chal} | {ref} |",
            "|---|---|---|",
        ]
        for name in sorted(set(self.challenger_metrics) | set(self.reference_metrics)):
            a, b = self.challenger_metrics.get(name), self.reference_metrics.get(name)
            lines.append(f"| {name} | {_fmt(a)} | {_fmt(b)} |")
        lines += [
            "",
            f"Gain {self.gain:+.4f} (min {self.config.min_gain if self.reference == 'champion' else self.config.baseline_margin}), "
            f"95% interval [{self.ci_low:+.4f}, {self.ci_high:+.4f}]",
        ]
        if self.slices:
            lines += [
                "",
                f"| slice | rows | challenger | champion | loss (tolerance {self.config.slice_tolerance}) |",
                "|---|---|---|---|---|",
            ]
            for s in self.slices:
                flag = " **blocks**" if s.blocked else ""
                lines.append(
                    f"| {s.column}={s.level} | {s.rows} | {s.challenger:.4f} | {s.champion:.4f} | {s.loss:+.4f}{flag} |"
                )
        if (t := self.trusted) is not None:
            limit = (
                f"tolerance {t.tolerance}"
                if t.reference == "champion"
                else "must beat the baseline"
            )
            lines += [
                "",
                f"## Trusted holdout: {'passed' if t.passed else '**REJECTED**'}",
                "",
                f"Ingested dataset version `{t.dataset_md5}`, {t.rows} holdout rows (labels no feedback can change)"
                + (" = the gate's own holdout." if t.same_holdout else "."),
                "",
                f"| {self.metric} | {chal} | {ref} | loss ({limit}) |",
                "|---|---|---|---|",
                f"| trusted holdout | {t.challenger:.4f} | {t.reference_value:.4f} | {t.loss:+.4f} |",
            ]
        return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def paired_bootstrap(
    metric: str,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    resamples: int,
    seed: int,
    chunk: int | None = None,
    classes: Sequence[Any] | np.ndarray | None = None,
) -> np.ndarray:
    """Gains (a minus b, positive = a better) on ``resamples`` paired resamples of the rows.

    Each resample draws n row indices with replacement (seeded) and scores BOTH models on the
    same draw; a draw is a row-count vector, so a chunk of draws is one (chunk, n) weight matrix
    and every metric is computed for the whole chunk with numpy at once. Multiclass scores take
    ``classes`` (their column order) like :func:`~models.evaluate.weighted_metric`.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(y)
    chunk = chunk or max(
        1, min(resamples, 2_000_000 // max(n, 1))
    )  # ~8 MB of float32 weights: cache-friendly
    sign = direction(metric)
    gains = np.empty(resamples)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        idx = rng.integers(
            0, n, size=(size, n), dtype=np.int64 if size * n >= 2**31 else np.int32
        )  # int32: 3x faster
        flat = (idx + (np.arange(size, dtype=idx.dtype) * n)[:, None]).ravel()
        W = (
            np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float32)
        )  # counts < 2**24: exact
        gains[start : start + size] = sign * (
            weighted_metric(metric, y, a, W, classes) - weighted_metric(metric, y, b, W, classes)
        )
    return gains


def decide(
    *,
    model_name: str,
    task: str,
    y: np.ndarray,
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray | None,
    baseline_scores: np.ndarray,
    config: GateConfig,
    slices: dict[tuple[str, str], np.ndarray] | None = None,
    challenger_version: str | None = None,
    champion_version: str | None = None,
    classes: Sequence[Any] | np.ndarray | None = None,
    target_counts: Mapping[Any, int] | None = None,
    trusted: TrustedScores | None = None,
    require_trusted: bool = False,
) -> GateReport:
    """Compare the challenger with the champion (or, without one, the dummy baseline) on the same rows.

    Multiclass scores are (n, k) probabilities in ``classes`` order (``pipeline.classes_``; default:
    the sorted levels of ``y``). ``target_counts`` (rows per class of the training target; default:
    those of ``y``) picks the gate metric when none was set. ``trusted``: both models scored on the
    trusted holdout; failing there rejects (:func:`trusted_comparison`), and so does ``require_trusted``
    without it (a model trained on feedback labels with no ingested version: nothing vouches for them).
    """
    from models.evaluate import compute_metrics

    counts = None
    if task == "classification":
        counts = target_counts if target_counts is not None else class_counts(y)
    metric = config.metric_for(task, counts)
    sign = direction(metric)
    y_arr, codes_of = _encode_labels(task, y, challenger_scores, classes)
    reference = "champion" if champion_scores is not None else "baseline"
    ref_scores = champion_scores if champion_scores is not None else baseline_scores
    g = _gain(metric, y_arr, challenger_scores, ref_scores, codes_of, config)
    comparisons: list[SliceComparison] = []
    if reference == "baseline":
        ok, reasons = _baseline_verdict(metric, g.gain, g.ci_low, config)
    else:
        comparisons = _slice_comparisons(
            metric, sign, y_arr, challenger_scores, ref_scores, slices or {}, codes_of, config
        )
        ok, reasons = _champion_verdict(metric, g.gain, g.ci_low, config, comparisons)
    comparison = None
    if trusted is not None:
        y_trusted = _encode_trusted(
            task, trusted.y, classes, challenger_scores, codes_of is not None
        )
        comparison = trusted_comparison(
            metric,
            y_trusted,
            trusted,
            tolerance=config.trusted_tolerance,
            classes=codes_of,
            against_champion=reference == "champion",
        )
    ok = _apply_trusted(ok, reasons, comparison, metric, require_trusted)
    return GateReport(
        model_name=model_name,
        challenger_version=challenger_version,
        champion_version=champion_version,
        decision="promote" if ok else "reject",
        reasons=reasons,
        metric=metric,
        higher_is_better=sign > 0,
        reference=reference,
        challenger_value=g.challenger,
        reference_value=g.reference,
        gain=g.gain,
        ci_low=g.ci_low,
        ci_high=g.ci_high,
        resamples=config.resamples,
        holdout_rows=len(y_arr),
        challenger_metrics=compute_metrics(task, y_arr, challenger_scores, codes_of),
        reference_metrics=compute_metrics(task, y_arr, ref_scores, codes_of),
        slices=comparisons,
        trusted=comparison,
        config=config,
    )


@dataclass(frozen=True)
class _Gain:
    """The challenger's and the reference's metric on the whole holdout, the gain (signed so that
    higher is better) and its 95% paired-bootstrap interval."""

    challenger: float
    reference: float
    gain: float
    ci_low: float
    ci_high: float


def _gain(
    metric: str,
    y: np.ndarray,
    challenger_scores: np.ndarray,
    reference_scores: np.ndarray,
    codes_of: Sequence[Any] | None,
    config: GateConfig,
) -> _Gain:
    """The challenger's gain over the reference on the same rows, with its bootstrap interval."""
    import numpy as np

    sign = direction(metric)
    ones = np.ones((1, len(y)))
    chal_value = float(weighted_metric(metric, y, challenger_scores, ones, codes_of)[0])
    ref_value = float(weighted_metric(metric, y, reference_scores, ones, codes_of)[0])
    gains = paired_bootstrap(
        metric,
        y,
        challenger_scores,
        reference_scores,
        resamples=config.resamples,
        seed=config.seed,
        classes=codes_of,
    )
    ci_low, ci_high = (float(v) for v in np.nanpercentile(gains, [2.5, 97.5]))
    return _Gain(chal_value, ref_value, sign * (chal_value - ref_value), ci_low, ci_high)


def _apply_trusted(
    ok: bool,
    reasons: list[str],
    comparison: TrustedComparison | None,
    metric: str,
    require_trusted: bool,
) -> bool:
    """The verdict with the trusted rule applied: a failed comparison rejects, and so does a missing
    one when ``require_trusted``. Adds its reason to ``reasons`` (first when it rejects)."""
    if comparison is not None:
        if comparison.passed:
            reasons.append(comparison.verdict(metric))
        else:  # first, so the one-line summary and the version's reason tag lead with it
            reasons.insert(0, comparison.verdict(metric))
        return ok and comparison.passed
    if require_trusted:
        reasons.insert(0, NO_TRUSTED_HOLDOUT)
        return False
    return ok


NO_TRUSTED_HOLDOUT = (
    "REJECTED: no trusted holdout - the dataset has no ingested version, so nothing vouches "
    "for the feedback labels this challenger was trained and gated on"
)


def _encode_labels(
    task: str,
    y: np.ndarray,
    challenger_scores: np.ndarray,
    classes: Sequence[Any] | np.ndarray | None,
) -> tuple[np.ndarray, Sequence[Any] | None]:
    """The labels as every metric call reads them, and the class codes (None unless multiclass):
    multiclass labels are encoded once as integer codes ``range(k)``; binary as 0/1; regression as floats."""
    import numpy as np

    from models.evaluate import binary_labels

    if task == "classification" and is_multiclass_scores(challenger_scores):
        k = challenger_scores.shape[1]
        return class_codes(y, infer_classes(y, k) if classes is None else classes), range(k)
    if task == "classification":
        return binary_labels(y), None
    return np.asarray(y, dtype=np.float64), None


def _baseline_verdict(
    metric: str, gain: float, ci_low: float, config: GateConfig
) -> tuple[bool, list[str]]:
    """No champion yet: the challenger must beat the dummy baseline by the margin, beyond noise."""
    margin_ok = gain >= config.baseline_margin
    ci_ok = ci_low > 0
    reasons = [
        f"no champion yet; challenger {'beats' if margin_ok else 'does not beat'} the dummy baseline by "
        f"{gain:+.4f} {metric} (margin {config.baseline_margin})",
        f"95% CI lower bound {ci_low:+.4f} {'> 0' if ci_ok else '<= 0: within noise'}",
    ]
    return margin_ok and ci_ok, reasons


def _champion_verdict(
    metric: str,
    gain: float,
    ci_low: float,
    config: GateConfig,
    comparisons: list[SliceComparison],
) -> tuple[bool, list[str]]:
    """Against the champion: a gain of at least ``min_gain``, beyond noise, and no slice regression."""
    gain_ok = gain >= config.min_gain
    ci_ok = ci_low > 0
    reasons = [
        f"gain {gain:+.4f} {metric} {'>=' if gain_ok else '<'} min_gain {config.min_gain}",
        f"95% CI lower bound {ci_low:+.4f} {'> 0' if ci_ok else '<= 0: the gain is within noise'}",
    ]
    blocked = [c for c in comparisons if c.blocked]
    if blocked:
        worst = max(blocked, key=lambda c: c.loss)
        reasons.append(
            f"slice regression: {len(blocked)} slice(s) lose more than {config.slice_tolerance} "
            f"(worst {worst.column}={worst.level}: {worst.loss:+.4f})"
        )
    else:
        reasons.append(
            f"no slice loses more than {config.slice_tolerance} ({len(comparisons)} checked)"
        )
    return gain_ok and ci_ok and not blocked, reasons


def _slice_comparisons(
    metric: str,
    sign: float,
    y: np.ndarray,
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray,
    slices: Mapping[tuple[str, str], np.ndarray],
    codes_of: Sequence[Any] | None,
    config: GateConfig,
) -> list[SliceComparison]:
    """Challenger vs champion on each slice (rows of one level of one column); a slice where either
    metric is undefined is left out. A loss over ``slice_tolerance`` blocks."""
    import numpy as np

    comparisons: list[SliceComparison] = []
    for (column, level), mask in slices.items():
        w = mask.astype(np.float64)[None, :]
        chal = float(weighted_metric(metric, y, challenger_scores, w, codes_of)[0])
        champ = float(weighted_metric(metric, y, champion_scores, w, codes_of)[0])
        if np.isnan(chal) or np.isnan(champ):
            continue
        loss = sign * (champ - chal)
        comparisons.append(
            SliceComparison(
                column=column,
                level=level,
                rows=int(mask.sum()),
                challenger=chal,
                champion=champ,
                loss=loss,
                blocked=loss > config.slice_tolerance,
            )
        )
    return comparisons


def _encode_trusted(
    task: str,
    y: np.ndarray,
    classes: Sequence[Any] | np.ndarray | None,
    scores: np.ndarray,
    multiclass: bool,
) -> np.ndarray:
    """The trusted holdout's labels encoded like the gate's: class codes (multiclass), 0/1 with the
    model's positive class ``classes[1]`` (binary: a holdout holding one class keeps its meaning),
    floats (regression)."""
    import numpy as np

    from models.evaluate import binary_labels

    if multiclass:
        return class_codes(y, infer_classes(y, scores.shape[1]) if classes is None else classes)
    if task != "classification":
        return np.asarray(y, dtype=np.float64)
    if classes is not None and len(classes) == 2:
        return (np.asarray(y) == np.asarray(classes)[1]).astype(np.int8)
    return binary_labels(y)


def trusted_comparison(
    metric: str,
    y: np.ndarray,
    trusted: TrustedScores,
    *,
    tolerance: float,
    against_champion: bool,
    classes: Sequence[Any] | None = None,
) -> TrustedComparison:
    """The trusted rule on encoded labels ``y`` (as :func:`decide` encodes them; ``classes``: the column
    codes of multiclass scores). Pure.

    With a champion (``against_champion``): passed unless the challenger's ``metric`` is worse than the
    champion's by more than ``tolerance`` (signed by the metric's direction, so it holds for AUC and
    RMSE alike). Without one: passed only if the challenger beats the dummy baseline (gain > 0).
    A value that cannot be computed (e.g. one class in the holdout) fails: the check fails closed.
    """
    import numpy as np

    if against_champion and trusted.champion is None:
        raise ValueError("the trusted check against a champion needs the champion's trusted scores")
    sign = direction(metric)
    ones = np.ones((1, len(y)))
    reference = (
        trusted.champion if against_champion and trusted.champion is not None else trusted.baseline
    )
    chal = float(weighted_metric(metric, y, trusted.challenger, ones, classes)[0])
    ref = float(weighted_metric(metric, y, reference, ones, classes)[0])
    loss = sign * (ref - chal)
    allowed = tolerance if against_champion else 0.0
    passed = bool(np.isfinite(loss)) and (loss <= allowed if against_champion else loss < 0)
    return TrustedComparison(
        dataset_md5=trusted.dataset_md5,
        rows=len(y),
        reference="champion" if against_champion else "baseline",
        challenger=chal,
        reference_value=ref,
        loss=loss,
        tolerance=allowed,
        passed=passed,
        same_holdout=trusted.same_holdout,
    )
