"""Ingest with real DVC + git in a temporary project: rejection rules, versions, round trip."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mloop.core import contract as c
from mloop.core.datasets import (
    DataRejected,
    export_version,
    get_version,
    ingest_dataset,
    list_versions,
    parquet_path,
    read_version,
)
from mloop.core.errors import MloopError, NotFoundError
from mloop.core.frames import file_md5, read_frame
from mloop.core.generate import generate, write_frame
from mloop.core.settings import Settings
from tests.data.helpers import DATASET, Onboarded, head, snapshot
from tests.helpers import columns, make_project


def _csv(df: pd.DataFrame, path: Path) -> Path:
    return write_frame(df, path)


def drop_region(base: pd.DataFrame, d: Path) -> Path:
    return _csv(base.drop(columns=["region"]), d / "f.csv")


def add_column(base: pd.DataFrame, d: Path) -> Path:
    return _csv(base.assign(branch_code="B-17"), d / "f.csv")


def text_in_numeric(base: pd.DataFrame, d: Path) -> Path:
    df = base.copy().astype({"credit_score": object})
    df.loc[[2, 9], "credit_score"] = "unknown"
    return _csv(df, d / "f.csv")


def drop_target(base: pd.DataFrame, d: Path) -> Path:
    return _csv(base.drop(columns=["target"]), d / "f.parquet")


def null_target(base: pd.DataFrame, d: Path) -> Path:
    df = base.copy().astype({"target": float})
    df.loc[[0, 5, 6], "target"] = np.nan
    return _csv(df, d / "f.csv")


def one_class(base: pd.DataFrame, d: Path) -> Path:
    return _csv(base.assign(target=0), d / "f.csv")


def zero_bytes(base: pd.DataFrame, d: Path) -> Path:
    (d / "f.csv").write_bytes(b"")
    return d / "f.csv"


def header_only(base: pd.DataFrame, d: Path) -> Path:
    return _csv(base.iloc[:0], d / "f.csv")


def garbage_parquet(base: pd.DataFrame, d: Path) -> Path:
    (d / "f.parquet").write_bytes(b"this is not a parquet file at all" * 10)
    return d / "f.parquet"


def ragged_csv(base: pd.DataFrame, d: Path) -> Path:
    path = _csv(base.iloc[:20], d / "f.csv")
    with open(path, "a") as fh:
        fh.write("1,2,3\n")
    return path


def missing_surge(base: pd.DataFrame, d: Path) -> Path:
    return _csv(generate("missing-surge", 2000, 3), d / "f.csv")


def out_of_range(base: pd.DataFrame, d: Path) -> Path:
    df = base.copy()
    df.loc[:99, "loan_amount"] = df.loc[:99, "loan_amount"] * 100 + 1e7
    return _csv(df, d / "f.csv")


def infinite_income(base: pd.DataFrame, d: Path) -> Path:
    df = base.copy()
    df.loc[[4, 8], "annual_income"] = [
        np.inf,
        -np.inf,
    ]  # written as inf / -inf, read back as infinity
    return _csv(df, d / "f.csv")


def new_category(base: pd.DataFrame, d: Path) -> Path:
    return _csv(generate("new-category", 2000, 3), d / "f.parquet")


def duplicates(base: pd.DataFrame, d: Path) -> Path:
    return _csv(pd.concat([base, base.iloc[:100]], ignore_index=True), d / "f.csv")


REJECTIONS: list[tuple[Callable[[pd.DataFrame, Path], Path], str, str | None, str]] = [
    (drop_region, c.RULE_MISSING_COLUMN, "region", "column 'region' is missing"),
    (
        add_column,
        c.RULE_UNEXPECTED_COLUMN,
        "branch_code",
        "column 'branch_code' is not in the contract",
    ),
    (
        text_in_numeric,
        c.RULE_DTYPE,
        "credit_score",
        "column 'credit_score' should be integer but is object (2 rows are not integer)",
    ),
    (drop_target, c.RULE_TARGET_MISSING, "target", "target column 'target' is absent"),
    (
        null_target,
        c.RULE_TARGET_NULL,
        "target",
        "target column 'target' has 3 null rows (0.1%), above max_null_share 0.0%",
    ),
    (
        one_class,
        c.RULE_SINGLE_CLASS,
        "target",
        "target 'target' has 1 class(es); classification needs at least 2",
    ),
    (zero_bytes, c.RULE_EMPTY, None, "the file is empty (0 bytes)"),
    (header_only, c.RULE_EMPTY, None, "the file has a header but no data rows (16 columns)"),
    (garbage_parquet, c.RULE_UNREADABLE, None, "cannot parse f.parquet"),
    (
        ragged_csv,
        c.RULE_UNREADABLE,
        None,
        "cannot parse f.csv: CSV parse error: Expected 16 columns, got 3",
    ),
    (missing_surge, c.RULE_NULL_SHARE, "annual_income", "column 'annual_income' has"),
    (
        out_of_range,
        c.RULE_OUT_OF_RANGE,
        "loan_amount",
        "column 'loan_amount' has 100 rows (5.0%) outside [",
    ),
    (
        infinite_income,
        c.RULE_NON_FINITE,
        "annual_income",
        "column 'annual_income' has 2 infinite value(s)",
    ),
    (
        new_category,
        c.RULE_UNKNOWN_CATEGORY,
        "loan_purpose",
        "with unknown categories, above max_unknown_share 1.0%",
    ),
    (
        duplicates,
        c.RULE_DUPLICATES,
        None,
        "100 duplicate rows (4.8%), above max_duplicate_share 1.0%",
    ),
]


@pytest.mark.parametrize(
    "make_file, rule, column, message", REJECTIONS, ids=[r[0].__name__ for r in REJECTIONS]
)
def test_rejected_data_changes_nothing(
    onboarded: Onboarded,
    tmp_path: Path,
    make_file: Callable,
    rule: str,
    column: str | None,
    message: str,
) -> None:
    settings = onboarded.settings
    before = snapshot(settings)
    path = make_file(onboarded.base, tmp_path)
    with pytest.raises(DataRejected) as info:
        ingest_dataset(settings, path, dataset=DATASET)
    report = info.value.report
    failures = [f for f in report.failures if f.rule == rule]
    assert failures, report.text()
    assert failures[0].column == column
    assert message in failures[0].message
    assert message in str(info.value) and info.value.exit_code == 4
    assert snapshot(settings) == before
    assert (
        get_version(settings, DATASET).md5 == onboarded.v1.version.md5
    )  # current version stays current


def test_rejection_report_has_counts_and_examples(onboarded: Onboarded, tmp_path: Path) -> None:
    with pytest.raises(DataRejected) as info:
        ingest_dataset(onboarded.settings, new_category(onboarded.base, tmp_path), dataset=DATASET)
    failure = info.value.report.failures[0]
    assert failure.rows > 100 and failure.examples == ["crypto"] and failure.limit == 0.01


def test_valid_but_drifted_data_is_accepted(onboarded: Onboarded, tmp_path: Path) -> None:
    """Drift is the monitor's job: covariate and concept drift pass the contract."""
    settings = onboarded.settings
    for scenario in ("covariate-shift", "concept-drift"):
        df = generate(scenario, 2000, 4)
        report = c.validate_frame(df, c.load_contract(settings.project_dir, DATASET))
        assert report.ok, report.text()


def test_first_ingest_infers_and_writes_contract(onboarded: Onboarded) -> None:
    settings, v1 = onboarded.settings, onboarded.v1
    assert v1.created and v1.contract_created
    contract = c.load_contract(settings.project_dir, DATASET)
    assert (
        contract.target == "target"
        and contract.task == "classification"
        and contract.time_column == "event_time"
    )
    version = v1.version
    assert version.rows == 2000 and len(version.columns) == 16 and version.git_commit is None
    pointer = settings.project_dir / "data" / DATASET / f"{DATASET}.parquet.dvc"
    assert f"md5: {version.md5}" in pointer.read_text()
    assert file_md5(parquet_path(settings, DATASET)) == version.md5
    remote_obj = settings.state.dvc_remote / "files" / "md5" / version.md5[:2] / version.md5[2:]
    assert file_md5(remote_obj) == version.md5
    assert any(settings.state.dvc_site_cache.rglob("*.db"))  # DVC's site cache is under MLOOP_HOME


def test_first_ingest_rejection_writes_no_contract(settings: Settings, tmp_path: Path) -> None:
    path = write_frame(generate("baseline", 300, 1).assign(target=1), tmp_path / "one.csv")
    with pytest.raises(DataRejected) as info:
        ingest_dataset(settings, path, dataset="fresh")
    assert info.value.report.rules == [c.RULE_SINGLE_CLASS]
    assert not (settings.project_dir / "data" / "fresh").exists()
    assert list_versions(settings, "fresh") == []
    path = write_frame(generate("baseline", 300, 1), tmp_path / "t.csv")
    with pytest.raises(DataRejected, match="target column 'label' is absent"):
        ingest_dataset(settings, path, dataset="fresh", target="label")
    assert not (settings.project_dir / "data" / "fresh").exists()
    frame = generate("baseline", 300, 1)
    frame.loc[7, "loan_amount"] = np.inf
    with pytest.raises(DataRejected, match="column 'loan_amount' has 1 infinite value") as info:
        ingest_dataset(settings, write_frame(frame, tmp_path / "inf.csv"), dataset="fresh")
    assert info.value.report.rules == [c.RULE_NON_FINITE] and info.value.report.failures[
        0
    ].examples == ["row 7"]
    assert (
        not (settings.project_dir / "data" / "fresh").exists()
        and list_versions(settings, "fresh") == []
    )
    only_target = write_frame(
        columns(generate("baseline", 300, 1), ["target"]), tmp_path / "only-target.csv"
    )
    with pytest.raises(
        DataRejected, match="no column is left to learn from: 'target' \\(target\\)"
    ) as info:
        ingest_dataset(settings, only_target, dataset="fresh")
    assert info.value.report.rules == [c.RULE_NO_FEATURES]
    assert (
        not (settings.project_dir / "data" / "fresh").exists()
        and list_versions(settings, "fresh") == []
    )


def test_features_named_like_prediction_log_columns_are_features(
    settings: Settings, tmp_path: Path
) -> None:
    """The prediction log keeps inputs apart from its own columns, so 'score', 'prediction', 'label' and an
    epoch 'timestamp' are features like any other. A datetime column named 'timestamp' is the time column."""
    from mloop.core.contract import load_contract

    frame = generate("baseline", 300, 1).rename(
        columns={"credit_score": "score", "annual_income": "prediction", "loan_purpose": "label"}
    )
    frame["timestamp"] = (
        1_700_000_000 + (np.arange(len(frame)) // 3) * 3600
    )  # an hourly epoch: an integer feature
    assert ingest_dataset(
        settings, write_frame(frame, tmp_path / "clashing.csv"), dataset="fresh"
    ).created
    features = [c.name for c in load_contract(settings.project_dir, "fresh").feature_columns]
    assert {"score", "prediction", "label", "timestamp"} <= set(features)
    timed = generate("baseline", 300, 1).rename(columns={"event_time": "timestamp"})
    assert ingest_dataset(
        settings, write_frame(timed, tmp_path / "timed.csv"), dataset="timed"
    ).created
    assert load_contract(settings.project_dir, "timed").time_column == "timestamp"


def test_a_role_flipped_by_hand_to_a_feature_named_prediction_loads(
    onboarded: Onboarded, tmp_path: Path
) -> None:
    import yaml

    from mloop.core.contract import contract_path, load_contract

    settings = onboarded.settings
    project = tmp_path / "project"
    shutil.copytree(settings.project_dir / "data", project / "data")
    path = contract_path(project, DATASET)
    doc = yaml.safe_load(path.read_text())
    doc["columns"].append(
        {"name": "prediction", "kind": "numeric", "nullable": False, "role": "feature"}
    )
    path.write_text(yaml.safe_dump(doc))
    assert "prediction" in [c.name for c in load_contract(project, DATASET).feature_columns]


def test_round_trip_from_remote_after_cache_and_parquet_deleted(
    settings: Settings, tmp_path: Path
) -> None:
    start = head(settings.project_dir)
    v1 = ingest_dataset(
        settings, write_frame(generate("baseline", 1500, 1), tmp_path / "v1.csv"), dataset=DATASET
    )
    v2 = ingest_dataset(
        settings,
        write_frame(generate("baseline", 1500, 2), tmp_path / "v2.parquet"),
        dataset=DATASET,
    )
    assert v1.created and v2.created and v1.version.md5 != v2.version.md5
    assert [v.md5 for v in list_versions(settings, DATASET)] == [v2.version.md5, v1.version.md5]
    assert get_version(settings, DATASET).md5 == v2.version.md5
    assert head(settings.project_dir) == start  # no commits unless git_commit_data

    shutil.rmtree(settings.state.dvc_cache)
    parquet_path(settings, DATASET).unlink()
    out = export_version(settings, DATASET, v1.version.md5, tmp_path / "got" / "v1.parquet")
    assert file_md5(out) == v1.version.md5
    df = read_version(settings, DATASET, v1.version.md5[:8])  # prefix works
    assert len(df) == 1500 and list(df.columns) == v1.version.columns


def test_corrupt_remote_object_is_refused(settings: Settings, tmp_path: Path) -> None:
    v1 = ingest_dataset(
        settings, write_frame(generate("baseline", 500, 1), tmp_path / "v1.csv"), dataset=DATASET
    )
    md5 = v1.version.md5
    shutil.rmtree(settings.state.dvc_cache)
    remote_obj = settings.state.dvc_remote / "files" / "md5" / md5[:2] / md5[2:]
    remote_obj.chmod(0o644)
    remote_obj.write_bytes(b"tampered")
    with pytest.raises(MloopError, match="is corrupt"):
        export_version(settings, DATASET, md5, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
    remote_obj.unlink()
    with pytest.raises(MloopError, match="neither in the local DVC cache nor on the remote"):
        export_version(settings, DATASET, md5, tmp_path / "out.parquet")


def test_identical_content_returns_same_version_and_writes_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    df = generate("baseline", 800, 1)
    first = ingest_dataset(settings, write_frame(df, tmp_path / "a.csv"), dataset=DATASET)
    before = snapshot(settings)
    again = ingest_dataset(settings, write_frame(df, tmp_path / "b.parquet"), dataset=DATASET)
    assert not again.created
    assert again.version == first.version
    assert snapshot(settings) == before


def test_unknown_versions_and_names(settings: Settings) -> None:
    with pytest.raises(NotFoundError, match="has no versions"):
        get_version(settings, DATASET)
    with pytest.raises(MloopError, match="invalid dataset name"):
        list_versions(settings, "../etc")


def test_version_lookup_errors(onboarded: Onboarded) -> None:
    with pytest.raises(NotFoundError, match="no version matching"):
        get_version(onboarded.settings, DATASET, "0" * 32)
    with pytest.raises(NotFoundError):
        get_version(onboarded.settings, DATASET, onboarded.v1.version.md5[:3])  # too short a prefix


def test_options_that_contradict_the_contract_are_refused(
    onboarded: Onboarded, tmp_path: Path
) -> None:
    path = write_frame(onboarded.base, tmp_path / "x.csv")
    with pytest.raises(MloopError, match="target 'age' differs from the contract's 'target'"):
        ingest_dataset(onboarded.settings, path, dataset=DATASET, target="age")


def test_production_mode_commits_pointer_and_contract(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home", project_dir=make_project(tmp_path / "prod"), git_commit_data=True
    )
    start = head(settings.project_dir)
    result = ingest_dataset(
        settings, write_frame(generate("baseline", 500, 1), tmp_path / "v.csv"), dataset=DATASET
    )
    commit = result.version.git_commit
    assert commit and commit != start and commit == head(settings.project_dir)
    import subprocess

    log = subprocess.run(
        ["git", "-C", str(settings.project_dir), "show", "--stat", "--format=%s", commit],
        capture_output=True,
        text=True,
    ).stdout
    assert f"data: {DATASET} version {result.version.md5}" in log
    assert f"data/{DATASET}/{DATASET}.parquet.dvc" in log and f"data/{DATASET}/contract.yaml" in log
    assert f"{DATASET}.parquet " not in log.replace(
        ".parquet.dvc", ""
    )  # the bytes themselves stay out of git


def test_concurrent_ingests_of_one_dataset_are_serialised(
    settings: Settings, tmp_path: Path
) -> None:
    ingest_dataset(
        settings, write_frame(generate("baseline", 600, 1), tmp_path / "v0.csv"), dataset=DATASET
    )
    paths = [
        write_frame(generate("baseline", 600, seed), tmp_path / f"v{seed}.csv") for seed in (2, 3)
    ]
    results: list[object] = []

    def run(p: Path) -> None:
        try:
            results.append(ingest_dataset(settings, p, dataset=DATASET))
        except Exception as exc:  # pragma: no cover - reported below
            results.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(getattr(r, "created", False) for r in results), results
    versions = list_versions(settings, DATASET)
    assert len(versions) == 3 and len({v.md5 for v in versions}) == 3
    assert (
        file_md5(parquet_path(settings, DATASET)) == versions[0].md5
    )  # the working file is the newest
    for v in versions:
        assert (
            len(read_frame(export_version(settings, DATASET, v.md5, tmp_path / f"{v.md5}.parquet")))
            == 600
        )


def test_git_ignored_dataset_folder_is_refused_with_a_fix(tmp_path: Path) -> None:
    import subprocess

    settings = Settings(home=tmp_path / "home", project_dir=make_project(tmp_path / "ignored"))
    (settings.project_dir / ".gitignore").write_text(f"/data/{DATASET}/\n")
    subprocess.run(["git", "-C", str(settings.project_dir), "add", ".gitignore"], check=True)
    subprocess.run(["git", "-C", str(settings.project_dir), "commit", "-qm", "ignore"], check=True)
    with pytest.raises(MloopError, match="git-ignored") as err:
        ingest_dataset(
            settings, write_frame(generate("baseline", 300, 1), tmp_path / "v.csv"), dataset=DATASET
        )
    assert ".gitignore rule" in str(err.value.fix)
    assert list_versions(settings, DATASET) == []
    assert not parquet_path(settings, DATASET).exists()


def _ingest_in_child(settings: Settings, path: Path, dataset: str) -> str:
    """One ingest in a separate process (DVC's and git's repo locks are per process)."""
    return ingest_dataset(settings, path, dataset=dataset).version.md5


def test_parallel_ingests_of_different_datasets_all_become_versions(
    settings: Settings, tmp_path: Path
) -> None:
    """Onboarding several datasets at once: each ingest (its own process) waits its turn for the
    repo-wide DVC add/push and git commit instead of failing on DVC's lock (LockError)."""
    import multiprocessing

    names = [f"shape{i}" for i in range(4)]
    paths = [
        write_frame(generate("baseline", 800, i, features=3 + i), tmp_path / f"{n}.csv")
        for i, n in enumerate(names)
    ]
    with multiprocessing.get_context("spawn").Pool(len(names)) as pool:
        md5s = pool.starmap(
            _ingest_in_child, [(settings, p, n) for p, n in zip(paths, names, strict=True)]
        )
    for name, md5 in zip(names, md5s, strict=True):
        assert [v.md5 for v in list_versions(settings, name)] == [md5]
