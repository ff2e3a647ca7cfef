"""deploy/kubernetes/prefect.yaml is prefect.yaml on a Kubernetes work pool, and nothing else.

The variant must keep every deployment of prefect.yaml as it is (names, entrypoints, descriptions,
tags, schedules, triggers, concurrency limits), change only the work pool, and name no host path:
a pod has none of the deploying host's folders. Each rule is a function returning the problems it
finds, so each one is also shown to catch a planted drift. The last test deploys the variant for real
onto a Prefect server of its own (a pool of type ``kubernetes`` with the repo's base job template) and
reads the deployments and automations back: no cluster is needed for that, only for running them.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mloop.core.paths import CODE_ROOT

VARIANT_DIR = CODE_ROOT / "deploy" / "kubernetes"
VARIANT = VARIANT_DIR / "prefect.yaml"
TEMPLATE = VARIANT_DIR / "base-job-template.json"
POOL = "mloop-kubernetes"
DEPLOY_TIME_VARIABLES = frozenset({"MLOOP_IMAGE", "MLOOP_MONITOR_SWEEP_SCHEDULE"})
"""``{{ $NAME }}`` the variant may use: filled in by `prefect deploy` from the deployer's shell, and
neither is a path (the image to run; the sweep schedule on/off, as in prefect.yaml)."""
SECRET_MOUNT = "/etc/mloop/platform"
"""Where the base job template mounts the Secret ``mloop-platform`` (entrypoint.sh copies it from there)."""

_ENV_VAR = re.compile(r"\{\{\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), path
    return doc


def _default_kubernetes_template() -> dict[str, Any]:
    """Prefect 3.9's own default base job template of the ``kubernetes`` worker type (shipped with
    the server: what `prefect work-pool get-default-base-job-template --type kubernetes` prints)."""
    import prefect

    views = Path(prefect.__file__).parent / "server" / "api" / "collections_data" / "views"
    meta = json.loads((views / "aggregate-worker-metadata.json").read_text())
    return dict(meta["prefect-kubernetes"]["kubernetes"]["default_base_job_configuration"])


# ---------------------------------------------------------------- the rules (pure: problems found)


def deployment_drift(reference: dict[str, Any], variant: dict[str, Any]) -> list[str]:
    """Every deployment of ``reference`` must be in ``variant`` unchanged but for its work pool, in order."""
    ref = [
        {k: v for k, v in d.items() if k != "work_pool"} for d in reference.get("deployments", [])
    ]
    var = [{k: v for k, v in d.items() if k != "work_pool"} for d in variant.get("deployments", [])]
    ref_ids = [(d.get("entrypoint"), d.get("name")) for d in ref]
    var_ids = [(d.get("entrypoint"), d.get("name")) for d in var]
    if ref_ids != var_ids:
        return [f"deployments differ: prefect.yaml has {ref_ids}, the variant {var_ids}"]
    return [
        f"{r['entrypoint']} ({r['name']}): {key} differs: {r.get(key)!r} != {v.get(key)!r}"
        for r, v in zip(ref, var, strict=True)
        for key in sorted(set(r) | set(v))
        if r.get(key) != v.get(key)
    ]


def pool_problems(variant: dict[str, Any], template: dict[str, Any]) -> list[str]:
    """Every deployment runs on the pool ``mloop-kubernetes``, with job variables its template defines."""
    known = set(template["variables"]["properties"])
    problems: list[str] = []
    for d in variant.get("deployments", []):
        pool = d.get("work_pool") or {}
        if pool.get("name") != POOL:
            problems.append(f"{d.get('entrypoint')}: work pool {pool.get('name')!r}, not {POOL!r}")
        unknown = set(pool.get("job_variables", {})) - known
        if unknown:
            problems.append(
                f"{d.get('entrypoint')}: job variables the kubernetes pool does not know: {sorted(unknown)}"
            )
    return problems


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def host_path_problems(variant: dict[str, Any]) -> list[str]:
    """No absolute or home-relative path, and no ``{{ $VAR }}`` but the deploy-time ones, anywhere."""
    problems: list[str] = []
    for text in _strings(variant):
        if text.startswith(("/", "~")) or re.search(r"(^|[\s=:])(/[A-Za-z0-9._-]+){2,}", text):
            problems.append(f"a host path: {text!r}")
        problems.extend(
            f"a value from the deploying host's environment: {text!r}"
            for name in _ENV_VAR.findall(text)
            if name not in DEPLOY_TIME_VARIABLES
        )
    return problems


def entrypoint_problems(variant: dict[str, Any]) -> list[str]:
    """Every entrypoint ``path.py:function`` is a file of this repo whose function is a Prefect flow."""
    from prefect import Flow

    problems: list[str] = []
    for d in variant.get("deployments", []):
        path, _, function = str(d.get("entrypoint", "")).partition(":")
        if not (CODE_ROOT / path).is_file() or not path.endswith(".py"):
            problems.append(f"{d.get('entrypoint')}: no such file in the repo")
            continue
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        if not isinstance(getattr(module, function, None), Flow):
            problems.append(f"{d.get('entrypoint')}: {function} is not a flow of {path}")
    return problems


def template_problems(template: dict[str, Any], default: dict[str, Any]) -> list[str]:
    """The pool's template is Prefect's kubernetes default (every variable, every placeholder) plus the
    team settings (ConfigMap and Secret ``mloop-team`` by envFrom) and the mounted credentials."""
    problems: list[str] = []
    if template.get("variables") != default["variables"]:
        problems.append("the variables are not Prefect's kubernetes defaults")
    ours = template["job_configuration"]
    for key, value in default["job_configuration"].items():
        if key != "job_manifest" and ours.get(key) != value:
            problems.append(f"job_configuration.{key} differs from Prefect's default")
    pod = ours["job_manifest"]["spec"]["template"]["spec"]
    default_container = default["job_configuration"]["job_manifest"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    container = pod["containers"][0]
    problems.extend(
        f"container field {key} differs from Prefect's default"
        for key, value in default_container.items()
        if container.get(key) != value
    )
    refs = {
        (kind, ref["name"]) for entry in container.get("envFrom", []) for kind, ref in entry.items()
    }
    if refs != {("configMapRef", "mloop-team"), ("secretRef", "mloop-team")}:
        problems.append(f"envFrom is {sorted(refs)}, not the ConfigMap and Secret mloop-team")
    secret_volumes = {
        v["name"]
        for v in pod.get("volumes", [])
        if v.get("secret", {}).get("secretName") == "mloop-platform"
    }
    mounts = [m for m in container.get("volumeMounts", []) if m["name"] in secret_volumes]
    if not (mounts and mounts[0]["mountPath"] == SECRET_MOUNT and mounts[0].get("readOnly")):
        problems.append(f"the Secret mloop-platform is not mounted read-only at {SECRET_MOUNT}")
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        problems.append("the pod may run as root")
    return problems


# ---------------------------------------------------------------- the real files


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return _load(CODE_ROOT / "prefect.yaml")


@pytest.fixture(scope="module")
def variant() -> dict[str, Any]:
    return _load(VARIANT)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return dict(json.loads(TEMPLATE.read_text()))


def test_the_variant_has_every_deployment_of_prefect_yaml_unchanged(
    reference: dict[str, Any], variant: dict[str, Any]
) -> None:
    assert len(variant["deployments"]) == len(reference["deployments"]) >= 8
    assert deployment_drift(reference, variant) == []


def test_every_deployment_runs_on_the_kubernetes_pool(
    reference: dict[str, Any], variant: dict[str, Any], template: dict[str, Any]
) -> None:
    assert pool_problems(variant, template) == []
    job = variant["deployments"][0]["work_pool"]["job_variables"]
    local = reference["deployments"][0]["work_pool"]["job_variables"]
    assert (job["command"], job["env"]) == (
        local["command"],
        local["env"],
    )  # one process per run, heartbeats
    for name in (
        "image",
        "namespace",
        "service_account_name",
        "image_pull_policy",
        "finished_job_ttl",
    ):
        assert name in job, name
    assert job["image"] == "{{ $MLOOP_IMAGE }}"


def test_the_variant_names_no_host_path(variant: dict[str, Any]) -> None:
    assert host_path_problems(variant) == []
    assert variant["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "."}}
    ]


def test_every_entrypoint_is_a_flow_of_this_repo(variant: dict[str, Any]) -> None:
    assert entrypoint_problems(variant) == []


def test_the_pool_template_is_prefects_kubernetes_default_plus_the_team_settings(
    template: dict[str, Any],
) -> None:
    assert template_problems(template, _default_kubernetes_template()) == []


def test_the_image_installs_from_the_lock_and_copies_the_mounted_credentials() -> None:
    dockerfile = (VARIANT_DIR / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in dockerfile
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]', dockerfile, re.M)
    assert entry is not None
    script = CODE_ROOT / Path(entry.group(1)).relative_to("/opt/mloop")
    assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    assert f"{SECRET_MOUNT}/platform.json" in script.read_text()
    assert re.search(r"^WORKDIR /opt/mloop$", dockerfile, re.M), (
        "the pull step's '.' must be the checkout"
    )


def test_the_entrypoint_script_installs_the_secret_privately(tmp_path: Path) -> None:
    source = tmp_path / "mounted.json"
    source.write_text('{"api_token": "x"}')
    home = tmp_path / "home"
    env = {
        "PATH": os.environ["PATH"],
        "MLOOP_HOME": str(home),
        "MLOOP_PLATFORM_SECRET": str(source),
    }
    out = subprocess.run(
        [str(VARIANT_DIR / "entrypoint.sh"), "cat", str(home / "secrets" / "platform.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == '{"api_token": "x"}'
    assert stat.S_IMODE((home / "secrets" / "platform.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


# ---------------------------------------------------------------- each rule catches its drift


def test_a_changed_trigger_parameter_is_drift(
    reference: dict[str, Any], variant: dict[str, Any]
) -> None:
    changed = copy.deepcopy(variant)
    train = next(
        d for d in changed["deployments"] if d["entrypoint"] == "flows/train.py:train_flow"
    )
    train["triggers"][0]["parameters"]["trigger"] = "something-else"
    assert any("triggers differs" in p for p in deployment_drift(reference, changed))


def test_a_missing_deployment_or_schedule_is_drift(
    reference: dict[str, Any], variant: dict[str, Any]
) -> None:
    fewer = copy.deepcopy(variant)
    fewer["deployments"].pop()
    assert deployment_drift(reference, fewer)
    unscheduled = copy.deepcopy(variant)
    sweep = next(
        d for d in unscheduled["deployments"] if d["entrypoint"].endswith(":monitor_sweep_flow")
    )
    del sweep["schedules"]
    assert any("schedules differs" in p for p in deployment_drift(reference, unscheduled))


def test_another_pool_or_an_unknown_job_variable_is_caught(
    variant: dict[str, Any], template: dict[str, Any]
) -> None:
    local = copy.deepcopy(variant)
    local["deployments"][0]["work_pool"] = {"name": "mloop-local", "job_variables": {}}
    assert any("not 'mloop-kubernetes'" in p for p in pool_problems(local, template))
    process_only = copy.deepcopy(variant)
    process_only["deployments"][0]["work_pool"]["job_variables"]["working_dir"] = "."
    assert any("working_dir" in p for p in pool_problems(process_only, template))


@pytest.mark.parametrize(
    "value",
    [
        "{{ $MLOOP_HOME }}/data",
        "{{ $MLOOP_CODE_DIR }}",
        "/home/someone/mloop",
        "~/mloop",
        "python /srv/mloop/run.py",
    ],
)
def test_a_host_path_or_host_variable_is_caught(variant: dict[str, Any], value: str) -> None:
    planted = copy.deepcopy(variant)
    planted["pull"] = [{"prefect.deployments.steps.set_working_directory": {"directory": value}}]
    assert host_path_problems(planted)


def test_an_entrypoint_that_is_no_flow_is_caught(variant: dict[str, Any]) -> None:
    wrong = copy.deepcopy(variant)
    wrong["deployments"][0]["entrypoint"] = "flows/ingest.py:no_such_flow"
    wrong["deployments"][1]["entrypoint"] = "flows/nothing.py:train_flow"
    problems = entrypoint_problems(wrong)
    assert len(problems) == 2, problems


def test_a_template_without_the_team_settings_is_caught(template: dict[str, Any]) -> None:
    default = _default_kubernetes_template()
    assert {p.split(" ")[0] for p in template_problems(default, default)} >= {"envFrom", "the"}
    renamed = copy.deepcopy(template)
    renamed["variables"]["properties"].pop("finished_job_ttl")
    assert "the variables are not Prefect's kubernetes defaults" in template_problems(
        renamed, default
    )


# ---------------------------------------------------------------- deployed for real


@pytest.mark.integration
def test_the_variant_deploys_onto_a_kubernetes_pool(
    tmp_path: Path, reference: dict[str, Any]
) -> None:
    """`prefect work-pool create --type kubernetes` with the repo's template, then `prefect deploy --all`
    of the variant, on a Prefect server of this test's own (its automations must not meet other tests'
    events): the server holds every deployment on that pool, with no host path, and every trigger."""
    from mloop.core.entrypoints import PREFECT, python_m
    from mloop.core.processes import free_port, start_prefect_server, stop_pid
    from mloop.core.service_urls import prefect_api_url
    from mloop.core.settings import Settings
    from mloop.platform.client import PrefectApi

    settings = Settings(home=tmp_path / "home", project_dir=tmp_path)
    settings.state.ensure()
    port = free_port()
    env = {
        **os.environ,
        **settings.service_env(),
        "PREFECT_API_URL": prefect_api_url("127.0.0.1", port),
    }
    server = start_prefect_server(settings.state.run, env, "127.0.0.1", port)
    try:
        prefect = python_m(PREFECT, "--no-prompt")
        run = {
            "env": {**env, "COLUMNS": "200"},
            "cwd": CODE_ROOT,
            "capture_output": True,
            "text": True,
            "timeout": 300,
        }
        made = subprocess.run(
            [
                *prefect,
                "work-pool",
                "create",
                POOL,
                "--type",
                "kubernetes",
                "--base-job-template",
                str(TEMPLATE),
            ],
            check=False,
            **run,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        deployed = subprocess.run(
            [*prefect, "deploy", "--all", "--prefect-file", str(VARIANT.relative_to(CODE_ROOT))],
            env={
                **run.pop("env"),
                "MLOOP_IMAGE": "registry.example.invalid/mloop:test",
                "MLOOP_MONITOR_SWEEP_SCHEDULE": "false",
            },
            check=False,
            **run,
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr

        api = PrefectApi(
            prefect_api_url("127.0.0.1", port), auth_string=""
        )  # this server has no auth
        pool = api._json("GET", f"/work_pools/{POOL}")
        assert pool["type"] == "kubernetes"
        flows = api.flow_names()
        found = {f"{flows[d['flow_id']]}/{d['name']}": d for d in api.deployments()}
        expected = {(d["entrypoint"], d["name"]) for d in reference["deployments"]}
        assert {(d["entrypoint"], d["name"]) for d in found.values()} == expected
        for name, d in found.items():
            assert d["work_pool_name"] == POOL, name
            assert d["job_variables"]["image"] == "registry.example.invalid/mloop:test", name
            assert d["pull_steps"] == [
                {"prefect.deployments.steps.set_working_directory": {"directory": "."}}
            ], name
            assert not d.get("path"), f"{name} stores the deploying host's path {d.get('path')!r}"
        sweep = found["monitor-sweep/local"]
        assert [(s["schedule"]["cron"], s["active"]) for s in sweep["schedules"]] == [
            ("*/10 * * * *", False)
        ]
        assert [s["schedule"]["cron"] for s in found["train/local"]["schedules"]] == ["0 3 * * 1"]
        triggers = {t["name"] for d in reference["deployments"] for t in d.get("triggers", [])}
        automations = {a["name"] for a in api._json("POST", "/automations/filter", {})}
        assert automations == triggers
    finally:
        stop_pid(server.pid)
