"""The trusted holdout rule of the promotion gate (pure): each rule can pass and can fail.

A challenger trained on feedback labels is scored twice: on the newest rows (whose labels may be
forged) and on a trusted holdout from ingested data. These tests feed :func:`models.gate_decision.decide`
scores directly, so the rule is checked without any I/O.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mloop.core.lineage import DatasetVersion
from mloop.core.settings import Settings
from models.gate_decision import (
    GateConfig,
    GateReport,
    TrustedScores,
    decide,
    trusted_comparison,
)
from models.gate_scoring import align_columns
from models.run_tags import trusted_tags
from tests.models.helpers import gate_config

N = 1500


def _labels(seed: int = 0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, n)


def _scores(y: np.ndarray, signal: float, seed: int) -> np.ndarray:
    """Probabilities whose separation grows with ``signal`` (negative: inverted, as after flipped labels)."""
    rng = np.random.default_rng(seed)
    z = signal * (y - 0.5) + rng.normal(size=len(y))
    return 1 / (1 + np.exp(-z))


def _trusted(
    y: np.ndarray, chal: np.ndarray, champ: np.ndarray | None, md5: str = "f" * 32
) -> TrustedScores:
    return TrustedScores(
        dataset_md5=md5,
        y=y,
        challenger=chal,
        champion=champ,
        baseline=np.full(len(y), float(np.mean(y))),
    )


def _decide(
    y, chal, champ, *, trusted=None, task="classification", require_trusted=False, **cfg
) -> GateReport:
    base = np.full(len(y), float(np.mean(y)))
    return decide(
        model_name="m",
        task=task,
        y=y,
        challenger_scores=chal,
        champion_scores=champ,
        baseline_scores=base,
        config=gate_config(**cfg),
        challenger_version="2",
        champion_version="1" if champ is not None else None,
        trusted=trusted,
        require_trusted=require_trusted,
    )


def test_poisoned_challenger_wins_the_newest_rows_but_is_rejected_on_the_trusted_holdout() -> None:
    """The poisoning case: forged labels make the challenger win the gate's own holdout by far."""
    y_new, y_trusted = _labels(1), _labels(2)
    # on the forged rows the inverted challenger "wins"; on ingested rows it is the inverted model it is
    chal, champ = _scores(y_new, 2.5, 1), _scores(y_new, -2.5, 2)
    plain = _decide(y_new, chal, champ)
    assert (
        plain.decision == "promote" and plain.trusted is None
    )  # what the gate did before: promote

    trusted = _trusted(y_trusted, _scores(y_trusted, -2.5, 3), _scores(y_trusted, 2.5, 4))
    report = _decide(y_new, chal, champ, trusted=trusted)
    assert report.decision == "reject"
    t = report.trusted
    assert t is not None and not t.passed and t.reference == "champion" and t.rows == N
    assert (
        t.challenger < 0.3
        and t.reference_value > 0.7
        and t.loss == pytest.approx(t.reference_value - t.challenger)
    )
    assert t.loss > gate_config().trusted_tolerance
    assert report.reasons[0].startswith(
        "REJECTED on the trusted holdout (ingested version ffffffff"
    )
    assert report.gain > 0.3 and report.ci_low > 0  # the newest rows alone still say "promote"
    assert "trusted holdout" in report.summary() and "REJECTED" in report.summary()
    md = report.to_markdown()
    assert (
        "## Trusted holdout: **REJECTED**" in md
        and f"`{'f' * 32}`" in md
        and f"{t.loss:+.4f}" in md
    )


def test_within_the_tolerance_the_gate_decides_as_before() -> None:
    y_new, y_trusted = _labels(1), _labels(2)
    chal, champ = _scores(y_new, 2.5, 1), _scores(y_new, 1.0, 2)
    same = _scores(y_trusted, 2.0, 3)
    slightly_worse = np.clip(same + np.random.default_rng(9).normal(scale=0.002, size=N), 0, 1)
    report = _decide(y_new, chal, champ, trusted=_trusted(y_trusted, slightly_worse, same))
    plain = _decide(y_new, chal, champ)
    assert report.decision == plain.decision == "promote"
    assert report.trusted is not None and report.trusted.passed
    assert 0 < report.trusted.loss <= report.config.trusted_tolerance  # a little worse, tolerated
    assert report.gain == plain.gain and report.ci_low == plain.ci_low
    # a worse challenger is still rejected by the other rules, trusted holdout or not
    worse = _decide(y_new, champ, chal, trusted=_trusted(y_trusted, same, same))
    assert worse.decision == "reject" and worse.trusted is not None and worse.trusted.passed


def test_the_tolerance_is_the_setting() -> None:
    y = _labels(2)
    champ = _scores(y, 2.0, 3)
    chal = _scores(y, 1.6, 4)  # a few hundredths of AUC worse
    loss = trusted_comparison(
        "roc_auc", y, _trusted(y, chal, champ), tolerance=0.01, against_champion=True
    ).loss
    assert 0.01 < loss < 0.2
    assert not trusted_comparison(
        "roc_auc", y, _trusted(y, chal, champ), tolerance=0.01, against_champion=True
    ).passed
    assert trusted_comparison(
        "roc_auc", y, _trusted(y, chal, champ), tolerance=0.2, against_champion=True
    ).passed
    assert GateConfig.from_settings(Settings(gate_trusted_tolerance=0.2)).trusted_tolerance == 0.2


def test_without_a_champion_the_challenger_must_beat_the_baseline_on_the_trusted_holdout() -> None:
    y_new, y_trusted = _labels(1), _labels(2)
    chal = _scores(y_new, 2.5, 1)
    good = _decide(y_new, chal, None, trusted=_trusted(y_trusted, _scores(y_trusted, 2.5, 3), None))
    assert good.decision == "promote" and good.trusted is not None and good.trusted.passed
    assert good.trusted.reference == "baseline" and good.trusted.reference_value == pytest.approx(
        0.5
    )

    bad = _decide(y_new, chal, None, trusted=_trusted(y_trusted, _scores(y_trusted, -2.5, 3), None))
    assert bad.decision == "reject" and bad.trusted is not None and not bad.trusted.passed
    assert "dummy baseline (must be > 0)" in bad.reasons[0] and bad.reasons[0].startswith(
        "REJECTED"
    )
    assert "must beat the baseline" in bad.to_markdown()


def test_regression_lower_is_better() -> None:
    rng = np.random.default_rng(0)
    y_new, y_trusted = rng.normal(size=N), rng.normal(size=N)
    chal, champ = y_new + rng.normal(scale=0.2, size=N), y_new + rng.normal(scale=1.0, size=N)
    assert _decide(y_new, chal, champ, task="regression", metric="rmse").decision == "promote"

    champ_t = y_trusted + rng.normal(scale=0.3, size=N)
    worse = _decide(
        y_new,
        chal,
        champ,
        task="regression",
        metric="rmse",
        trusted=_trusted(y_trusted, y_trusted + rng.normal(scale=1.0, size=N), champ_t),
    )
    t = worse.trusted
    assert worse.decision == "reject" and t is not None and not t.passed
    assert not worse.higher_is_better and t.challenger > t.reference_value  # a larger RMSE is worse
    assert t.loss == pytest.approx(t.challenger - t.reference_value) and t.loss > 0.5

    close = _decide(
        y_new,
        chal,
        champ,
        task="regression",
        metric="rmse",
        trusted=_trusted(y_trusted, champ_t - 0.001, champ_t),
    )
    assert close.decision == "promote" and close.trusted is not None and close.trusted.passed
    assert abs(close.trusted.loss) <= close.config.trusted_tolerance


def test_multiclass_trusted_holdout_uses_the_gate_class_order() -> None:
    rng = np.random.default_rng(0)
    k, classes = 3, np.array(["a", "b", "c"])

    def probs(y_codes: np.ndarray, signal: float, seed: int) -> np.ndarray:
        z = np.random.default_rng(seed).normal(size=(len(y_codes), k))
        z[np.arange(len(y_codes)), y_codes] += signal
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    codes_new, codes_trusted = rng.integers(0, k, N), rng.integers(0, k, N)
    y_new, y_trusted = classes[codes_new], classes[codes_trusted]
    trusted = TrustedScores(
        dataset_md5="a" * 32,
        y=y_trusted,
        challenger=probs((codes_trusted + 1) % k, 3.0, 1),
        champion=probs(codes_trusted, 3.0, 2),
        baseline=np.full((N, k), 1 / k),
    )
    report = decide(
        model_name="m",
        task="classification",
        y=y_new,
        challenger_scores=probs(codes_new, 3.0, 3),
        champion_scores=probs(codes_new, 1.0, 4),
        baseline_scores=np.full((N, k), 1 / k),
        config=gate_config(),
        classes=classes,
        trusted=trusted,
    )
    assert report.trusted is not None and not report.trusted.passed and report.decision == "reject"
    assert report.trusted.reference_value > 0.9 and report.trusted.challenger < 0.5


def test_a_feedback_model_with_no_ingested_version_is_rejected() -> None:
    y = _labels(1)
    report = _decide(y, _scores(y, 2.5, 1), _scores(y, 1.0, 2), require_trusted=True)
    assert report.decision == "reject" and report.trusted is None
    assert report.reasons[0].startswith("REJECTED: no trusted holdout")


def test_an_unmeasurable_trusted_holdout_fails_closed() -> None:
    y_new = _labels(1)
    one_class = np.zeros(200, dtype=int)  # AUC is undefined
    report = _decide(
        y_new,
        _scores(y_new, 2.5, 1),
        _scores(y_new, 1.0, 2),
        trusted=_trusted(one_class, np.full(200, 0.3), np.full(200, 0.2)),
    )
    assert report.decision == "reject" and report.trusted is not None and not report.trusted.passed


def test_trusted_numbers_reach_the_tags_and_the_audit_metrics() -> None:
    y_new, y_trusted = _labels(1), _labels(2)
    report = _decide(
        y_new,
        _scores(y_new, 2.5, 1),
        _scores(y_new, -2.5, 2),
        trusted=_trusted(y_trusted, _scores(y_trusted, -2.5, 3), _scores(y_trusted, 2.5, 4)),
    )
    t = report.trusted
    assert t is not None
    expected = {
        "trusted_challenger_roc_auc": t.challenger,
        "trusted_reference_roc_auc": t.reference_value,
        "trusted_loss": t.loss,
    }
    assert report.tag_metrics() == {**report.interval(), **expected}
    assert expected.items() <= report.audit_metrics().items()
    tag = json.loads(trusted_tags(report)["mloop.gate_trusted"])
    assert tag["passed"] is False and tag["dataset_md5"] == "f" * 32 and tag["rows"] == N
    assert trusted_tags(_decide(y_new, _scores(y_new, 2.5, 1), None)) == {}


def test_align_columns() -> None:
    scores = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert align_columns(scores, ["a", "b"], ["a", "b"]) is scores
    assert align_columns(scores, ["b", "c"], ["a", "b", "c"]).tolist() == [
        [0.0, 0.2, 0.8],
        [0.0, 0.6, 0.4],
    ]


def test_label_source_in_the_version_index(tmp_path: Path) -> None:
    """Index rows written before the field existed read as ingested; the trusted version is the newest
    ingested one, whatever feedback versions came after it."""
    from mloop.core.datasets import index_path, list_versions, trusted_version

    settings = Settings(home=tmp_path / "home", project_dir=tmp_path)

    def row(md5: str, source: str | None) -> str:
        v = DatasetVersion(
            name="loans", md5=md5, rows=1, columns=["a"], created_at=datetime.now(UTC), path="p"
        )
        data = v.model_dump(mode="json", exclude={"label_source"})
        return json.dumps(data if source is None else {**data, "label_source": source})

    assert trusted_version(settings, "loans") is None
    index = index_path(settings, "loans")
    index.parent.mkdir(parents=True)
    index.write_text(
        "\n".join([row("a" * 32, None), row("b" * 32, "ingested"), row("c" * 32, "feedback")])
        + "\n"
    )
    assert [v.label_source for v in list_versions(settings, "loans")] == [
        "feedback",
        "ingested",
        "ingested",
    ]
    found = trusted_version(settings, "loans")
    assert found is not None and found.md5 == "b" * 32
    index.write_text(row("a" * 32, None) + "\n" + row("c" * 32, "feedback") + "\n")
    old = trusted_version(settings, "loans")
    assert old is not None and old.md5 == "a" * 32  # an old row without the field is ingested
    with pytest.raises(ValueError):
        DatasetVersion.model_validate({**json.loads(row("d" * 32, None)), "label_source": "rumour"})


def test_approval_is_required_for_feedback_labels_when_the_setting_says_so() -> None:
    from models.gate_scoring import approval_required

    off, on = (
        Settings().approve_feedback_retrains,
        Settings(approve_feedback_retrains=True).approve_feedback_retrains,
    )
    assert not approval_required(off, "feedback") and not approval_required(on, "ingested")
    assert approval_required(on, "feedback") and approval_required(off, "ingested", requested=True)
