"""One typed settings object for the whole platform.

Every value can be set with an environment variable named ``MLOOP_<FIELD>`` (for example
``MLOOP_HOME=/tmp/x``). Capabilities never read the environment themselves: they get a
``Settings`` (or the values they need) as arguments. Only entry points (CLI, flows) build one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mloop.core.alert_actions import DEFAULT_ALERT_ACTIONS
from mloop.core.paths import StatePaths
from mloop.core.secrets import PlatformSecrets, ensure_secrets, load_secrets
from mloop.core.service_urls import http_url, prefect_api_url
from mloop.core.team import is_team, require_team

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
"""Host header names every service accepts besides its configured host (see :meth:`Settings.host_allowlist`)."""


MAX_WORKERS = 8
"""Most local workers ``mloop up`` runs (``MLOOP_WORKERS``): each is a Python process of about 130 MB, and workers add
pick-up capacity and resilience, not parallelism (every worker runs any number of flow runs at once)."""


class Settings(BaseSettings):
    """Platform settings (env prefix ``MLOOP_``)."""

    model_config = SettingsConfigDict(env_prefix="MLOOP_", extra="ignore")

    project_dir: Path = Field(
        default_factory=Path.cwd,
        description="The mloop project checkout: holds data/ (contracts, DVC pointers) and is the DVC repo.",
    )
    home: Path | None = Field(
        default=None,
        description="Folder for all runtime state (default: <project_dir>/.mloop). Delete it to reset.",
    )
    host: str = Field(default="127.0.0.1", description="Address every local service binds to.")
    prefect_port: int = Field(
        default=4200, description="Port of the local Prefect server (mloop up)."
    )
    mlflow_port: int = Field(default=5000, description="Port of the local MLflow UI (mloop up).")
    serve_port: int = Field(default=3000, description="Port of the BentoML prediction service.")
    webhook_port: int = Field(
        default=3100,
        description="Port of the Alertmanager webhook receiver (POST /alerts, /notifications).",
    )
    dvc_remote: str | None = Field(
        default=None,
        description="DVC remote URL for dataset versions (default: <home>/dvc-remote). Any DVC remote URL works.",
    )
    git_commit_data: bool = Field(
        default=False,
        description="Production-like mode: commit each accepted dataset's .dvc pointer and contract in git.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI (default: sqlite DB under <home>/mlflow).",
    )
    # Team mode (issue 13): shared PostgreSQL and S3. Unset = today's single-machine defaults.
    database_url: SecretStr | None = Field(
        default=None,
        description="Team mode: PostgreSQL URL (postgresql://user:password@host:port/mloop). Prefect and MLflow each "
        "use a database of their own beside it (<name>_prefect, <name>_mlflow); mloop's shared records use <name>.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Team mode: the S3 endpoint (e.g. http://127.0.0.1:8333 for `mloop infra up`); credentials "
        "come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.",
    )
    artifacts_uri: str | None = Field(
        default=None,
        description="Team mode: s3://bucket/prefix holding the DVC remote, MLflow artifacts, BentoML models and "
        "the prediction log.",
    )
    # The promotion gate's settable parameters: models.gate_decision.GateConfig (and the train flow's
    # GateParams form) take their defaults, descriptions and bounds from these fields.
    gate_metric: str = Field(
        default="roc_auc",
        description="Metric the promotion gate compares (roc_auc, pr_auc, f1, log_loss, brier, rmse, mae, r2).",
    )
    gate_min_gain: float = Field(
        default=0.002, description="Smallest gain over the champion that can promote."
    )
    gate_slice_tolerance: float = Field(
        default=0.02, description="Largest loss on any slice the gate accepts."
    )
    gate_resamples: int = Field(
        default=1000, ge=1000, description="Paired bootstrap resamples (>= 1000, seeded)."
    )
    gate_baseline_margin: float = Field(
        default=0.02, description="Margin a first model must beat the dummy baseline by."
    )
    drift_share_threshold: float = Field(
        default=0.3, description="Share of drifted columns that counts as dataset drift."
    )
    retrain_cooldown_minutes: float = Field(
        default=30.0,
        description="A drift-triggered retrain within this many minutes of the last one of the same model is "
        "skipped (per model: `mloop monitor configure`).",
    )
    daily_retrain_budget: int = Field(
        default=6,
        description="At most this many automatic retrains of one model a day (per model: `mloop monitor configure`).",
    )
    monitor_window_size: int = Field(
        default=5000,
        ge=1,
        description="The monitor checks the newest N logged predictions of a model (per model: `mloop monitor configure`).",
    )
    monitor_min_rows: int = Field(
        default=100,
        ge=1,
        description="A model with fewer predictions in its window is skipped by the monitor.",
    )
    monitor_sweep_schedule: bool = Field(
        default=True,
        description="The 10-minute schedule of the monitor sweep (`monitor-sweep/local`, every served model) is "
        "active; false pauses it (the sweep still runs from the UI or `mloop monitor sweep`).",
    )
    monitor_sweep_workers: int = Field(
        default=2,
        ge=1,
        le=32,
        description="How many models one monitor sweep checks at once (threads).",
    )
    package_on_promote: bool = Field(
        default=True,
        description="The train flow packages a version it promotes as its BentoML model, so the deploy flow "
        "the promotion triggers finds it packaged (off: the deploy flow packages it).",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the write endpoints (/alerts, /notifications, /feedback, /admin/rollout); "
        "default: the one generated in <home>/secrets/platform.json.",
    )
    auth: bool = Field(
        default=True,
        description="Every service requires credentials (bearer token, Prefect basic auth, MLflow basic auth). "
        "MLOOP_AUTH=false turns all of it off: only on a machine nobody else can reach.",
    )
    predict_requires_token: bool = Field(
        default=True,
        description="/predict also requires the bearer token (false: predictions are open, writes stay guarded).",
    )
    serve_host: str | None = Field(
        default=None,
        description="Address the prediction service binds to (default: host). Exposing predictions "
        "(e.g. 0.0.0.0) does not expose Prefect, MLflow or the webhook.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra Host header names every service accepts (JSON list); loopback names and the bind "
        "addresses are always accepted. Guards against DNS rebinding.",
    )
    approve_feedback_retrains: bool = Field(
        default=False,
        description="Retrains whose labels came from feedback (drift or alert remediation) wait for a person's "
        "approval in the Prefect UI before the champion moves.",
    )
    gate_trusted_tolerance: float = Field(
        default=0.1,
        ge=0,
        description="A challenger scoring more than this below the champion on the trusted holdout (ingested "
        "data no feedback can change) is rejected, whatever the newest rows say. 0.1 lets a real regime change "
        "learnt from feedback through (measured: -0.045 to -0.06 AUC on the old data) and stops flipped labels "
        "(-0.52); lower it, or set MLOOP_APPROVE_FEEDBACK_RETRAINS, to be stricter.",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest request body the prediction service and webhook read.",
    )
    max_alerts_per_request: int = Field(
        default=1000,
        ge=1,
        description="Most alerts one POST /alerts may carry (Alertmanager groups can be large).",
    )
    notifications_max_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        description="Cap of notifications.jsonl; older lines move to notifications.jsonl.1 (one generation kept).",
    )
    watchdog: bool = Field(
        default=True,
        description="`mloop up` starts a watchdog: restarts dead services, serves each champion, delivers queued events.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=MAX_WORKERS,
        description="How many Prefect process workers `mloop up` runs on the platform's pool (`mloop up --workers N`), "
        "each supervised, all polling its default queue; a later `mloop up` with fewer stops the extra ones.",
    )
    watchdog_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often the watchdog checks every service's pid and health (seconds).",
    )
    reconcile_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often the watchdog compares each champion with what is served (seconds; a champion whose "
        "deploy event was lost is served within about two periods plus a deploy).",
    )
    alert_actions: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ALERT_ACTIONS),
        description="Alert name -> remediation (rollback, retrain, notify, ignore); JSON in MLOOP_ALERT_ACTIONS.",
    )
    notify_url: str | None = Field(
        default=None,
        description="Webhook the notification block posts to (default: the local receiver's /notifications).",
    )

    @property
    def state(self) -> StatePaths:
        """The state layout under MLOOP_HOME (absolute paths)."""
        home = self.home if self.home is not None else self.project_dir / ".mloop"
        return StatePaths(root=home.expanduser().resolve(), local_stores=not is_team(self))

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI: the setting; in team mode the MLflow server (``mloop up`` runs it on
        host:mlflow_port, on PostgreSQL and S3); else the SQLite DB under MLOOP_HOME."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if is_team(self):
            require_team(
                self
            )  # a wrong team setting is reported here, not as a confusing MLflow error
            return http_url(self.host, self.mlflow_port)
        return f"sqlite:///{self.state.mlflow_db}"

    @property
    def local_tracking_db(self) -> Path | None:
        """The SQLite file of the tracking store when it is the local default (None: a tracking URI is set,
        or team mode): code that reads the store directly checks it exists before creating it by accident."""
        return None if self.mlflow_tracking_uri or is_team(self) else self.state.mlflow_db

    @property
    def prefect_api_url(self) -> str:
        """The local Prefect server's API URL (``mloop up`` runs it on host:prefect_port)."""
        return prefect_api_url(self.host, self.prefect_port)

    @property
    def serving_host(self) -> str:
        """The prediction service's bind address (``serve_host``, else ``host``)."""
        return self.serve_host or self.host

    def host_allowlist(self) -> list[str]:
        """Host header names every service accepts: loopback names, the bind addresses, ``allowed_hosts``.

        A wildcard bind address (0.0.0.0, ::) is not a name and is left out: expose a service on all
        interfaces and list the names clients use in ``MLOOP_ALLOWED_HOSTS``.
        """
        names = [*LOOPBACK_HOSTS, self.host, self.serving_host, *self.allowed_hosts]
        out: list[str] = []
        for name in names:
            name = name.strip().strip("[]").lower()
            if name and name not in ("0.0.0.0", "::") and name not in out:  # nosec B104  # drops wildcards, binds nothing
                out.append(name)
        return out

    def credentials(self, *, create: bool = True) -> PlatformSecrets | None:
        """The platform's credentials (created on first use, 0600; with ``create=False`` None when none
        exist yet, for read-only commands), MLOOP_API_TOKEN overriding the generated bearer token; None
        when ``auth`` is off."""
        if not self.auth:
            return None
        found = ensure_secrets(self.state.root) if create else load_secrets(self.state.root)
        if found is None:
            return None
        if self.api_token is not None and self.api_token.get_secret_value():
            found = found.model_copy(update={"api_token": self.api_token})
        return found

    def bearer_token(self, *, create: bool = True) -> str | None:
        """The token the write endpoints require (None: auth is off, or ``create=False`` and none exists)."""
        found = self.credentials(create=create)
        return found.api_token.get_secret_value() if found is not None else None

    def client_auth_env(self) -> dict[str, str]:
        """Client credentials of Prefect and MLflow for a process's environment (empty: auth off or no
        secret created yet). Never logged."""
        if not self.auth:
            return {}
        found = load_secrets(self.state.root)
        if found is None:
            return {}
        return {
            "PREFECT_API_AUTH_STRING": found.prefect_auth_string.get_secret_value(),
            "MLFLOW_TRACKING_USERNAME": found.mlflow_username,
            "MLFLOW_TRACKING_PASSWORD": found.mlflow_password.get_secret_value(),
        }

    @property
    def remote_url(self) -> str:
        """DVC remote URL: the setting; in team mode ``s3://bucket/prefix/dvc``; else a local folder under MLOOP_HOME."""
        if self.dvc_remote:
            return self.dvc_remote
        if is_team(self):
            return require_team(self).artifacts.dvc_remote
        return str(self.state.dvc_remote)

    def child_env(self) -> dict[str, str]:
        """``MLOOP_*`` variables that rebuild these settings in a child process (the one rendering).

        ``MLOOP_API_TOKEN`` is passed only when the person set it; the generated token never is:
        children read it from the secret file (0600) under MLOOP_HOME. Never logged.
        """
        env: dict[str, str] = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if name == "api_token":
                if self.api_token is not None and self.api_token.get_secret_value():
                    env["MLOOP_API_TOKEN"] = self.api_token.get_secret_value()
                continue
            if isinstance(
                value, SecretStr
            ):  # e.g. MLOOP_DATABASE_URL: the value, not pydantic's mask
                text = value.get_secret_value()
            elif isinstance(value, dict | list):
                text = json.dumps(value)
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            env[f"MLOOP_{name.upper()}"] = text
        env["MLOOP_HOME"] = str(self.state.root)
        env["MLOOP_PROJECT_DIR"] = str(self.project_dir.resolve())
        return env

    def service_env(self) -> dict[str, str]:
        """Environment that points every library at MLOOP_HOME and turns telemetry off.

        Entry points apply it to ``os.environ`` (libraries such as Prefect read it at import) and
        pass it to child processes they start.
        """
        s = self.state
        return {
            "MLOOP_HOME": str(s.root),
            "MLOOP_PROJECT_DIR": str(self.project_dir.resolve()),
            "PREFECT_HOME": str(s.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "DO_NOT_TRACK": "1",
            "BENTOML_HOME": str(s.bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DVC_NO_ANALYTICS": "1",
            "DVC_SITE_CACHE_DIR": str(s.dvc_site_cache),
            "GIT_PYTHON_REFRESH": "quiet",
            # Libraries that would otherwise write under the user's home (~/.cache, ~/.config).
            "XDG_CACHE_HOME": str(s.cache),
            "MPLCONFIGDIR": str(s.cache / "matplotlib"),
            **self.client_auth_env(),
        }

    def apply_env(self) -> None:
        """Export :meth:`service_env` into this process (entry points only) and create the state folders.

        Also sets the umask to 077: databases, logs and predictions this process (and every child it
        starts) creates are readable by their owner only.
        """
        os.umask(0o077)
        self.state.ensure()
        os.environ.update(self.service_env())
