"""Cheap diagnostic plots as PNG files (matplotlib Agg, object API: no pyplot global state).

Classification: ROC, PR, confusion matrix (threshold 0.5), calibration, feature importance;
multiclass (2-D scores): one-vs-rest ROC per class, confusion matrix (argmax), feature importance.
Regression: predicted vs actual, residuals, feature importance. Small figures at low dpi: the
whole set costs well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from matplotlib.figure import Figure

_DPI = 72
_SIZE = (4.0, 3.2)


def _figure() -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=_SIZE, dpi=_DPI)
    fig.subplots_adjust(
        left=0.17, bottom=0.15, right=0.97, top=0.9
    )  # fixed margins: no layout engine pass
    return fig


def _thin(*arrays: np.ndarray, points: int = 200) -> list[np.ndarray]:
    """At most ``points`` evenly spaced samples of curves (a 20k-point line costs time, not information)."""
    import numpy as np

    n = len(arrays[0])
    if n <= points:
        return list(arrays)
    idx = np.unique(np.linspace(0, n - 1, points).astype(int))
    return [a[idx] for a in arrays]


def _save(fig: Figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).print_png(str(path))
    return path


def _importance(importances: dict[str, float], out: Path) -> Path:
    items = sorted(importances.items(), key=lambda kv: kv[1])[-15:]
    fig = _figure()
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
    fig.subplots_adjust(left=0.35)
    ax.set_title("Permutation importance (raw features)", fontsize=9)
    ax.tick_params(labelsize=7)
    return _save(fig, out / "feature_importance.png")


def classification_plots(
    y: np.ndarray,
    scores: np.ndarray,
    importances: dict[str, float],
    out: Path,
    classes: Sequence[Any] | np.ndarray | None = None,
) -> list[Path]:
    """Write the classification PNGs into ``out``; returns their paths.

    Binary: ``y`` 0/1 and positive-class ``scores``. Multiclass: raw labels ``y`` and (n, k)
    ``scores`` in ``classes`` order (default: the sorted levels of ``y``).
    """
    import numpy as np
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

    out.mkdir(parents=True, exist_ok=True)
    if np.ndim(scores) == 2:
        return _multiclass_plots(y, scores, importances, out, classes)
    paths = []
    fpr, tpr = _thin(*roc_curve(y, scores)[:2])
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    paths.append(_save(fig, out / "roc.png"))

    precision, recall = _thin(*precision_recall_curve(y, scores)[:2])
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(recall, precision)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    paths.append(_save(fig, out / "pr.png"))

    cm = confusion_matrix(y, (scores >= 0.5).astype(int), labels=[0, 1])
    fig = _figure()
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xlabel="predicted",
        ylabel="actual",
        title="Confusion matrix (0.5)",
    )
    paths.append(_save(fig, out / "confusion_matrix.png"))

    frac_pos, mean_pred = calibration_curve(y, scores, n_bins=10, strategy="quantile")
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(mean_pred, frac_pos, marker="o")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set(xlabel="mean predicted probability", ylabel="fraction positive", title="Calibration")
    paths.append(_save(fig, out / "calibration.png"))
    paths.append(_importance(importances, out))
    return paths


def _multiclass_plots(
    y: np.ndarray,
    scores: np.ndarray,
    importances: dict[str, float],
    out: Path,
    classes: Sequence[Any] | np.ndarray | None,
) -> list[Path]:
    """One-vs-rest ROC per class and the confusion matrix of the argmax class."""
    import numpy as np
    from sklearn.metrics import confusion_matrix, roc_curve

    from models.target import class_codes, infer_classes

    k = scores.shape[1]
    names = list(infer_classes(y, k) if classes is None else classes)
    codes = class_codes(y, names)
    fig = _figure()
    ax = fig.add_subplot()
    for c, name in enumerate(names):
        if 0 < (codes == c).sum() < len(codes):
            fpr, tpr = _thin(*roc_curve(codes == c, scores[:, c])[:2])
            ax.plot(fpr, tpr, label=str(name))
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.legend(fontsize=6)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (one vs rest)")
    paths = [_save(fig, out / "roc.png")]

    cm = confusion_matrix(codes, scores.argmax(axis=1), labels=list(range(k)))
    fig = _figure()
    ax = fig.add_subplot()
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    ticks = list(range(k))
    ax.set(
        xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="actual", title="Confusion matrix"
    )
    ax.set_xticklabels([str(n) for n in names], fontsize=6, rotation=45)
    ax.set_yticklabels([str(n) for n in names], fontsize=6)
    paths.append(_save(fig, out / "confusion_matrix.png"))
    paths.append(_importance(importances, out))
    return paths


def regression_plots(
    y: np.ndarray, scores: np.ndarray, importances: dict[str, float], out: Path
) -> list[Path]:
    """Write the regression PNGs into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    fig = _figure()
    ax = fig.add_subplot()
    step = max(1, len(y) // 2000)
    ax.scatter(y[::step], scores[::step], s=2, alpha=0.4)
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
    paths = [_save(fig, out / "predicted_vs_actual.png")]
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(scores - y, bins=40)
    ax.set(xlabel="residual", title="Residuals")
    paths.append(_save(fig, out / "residuals.png"))
    paths.append(_importance(importances, out))
    return paths
