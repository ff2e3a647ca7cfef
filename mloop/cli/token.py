"""``mloop token``: what a person needs to log in to the platform's UIs and call its API.

The credentials are the platform secret (``<home>/secrets/platform.json``, 0600), created here when
missing, with ``MLOOP_API_TOKEN`` overriding the generated bearer token. They are printed only on
this command's stdout, on request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mloop.cli.common import console, load_settings, print_json, user_errors

if TYPE_CHECKING:
    from mloop.core.secrets import PlatformSecrets
    from mloop.core.settings import Settings

TOKEN_KEYS = ("api_token", "prefect_auth_string", "mlflow_username", "mlflow_password")
"""The keys of ``mloop token --json`` (exactly these)."""


def token_document(found: PlatformSecrets | None) -> dict[str, str | None]:
    """``mloop token --json``: the four values a client needs (all None when auth is off). Pure."""
    revealed = found.revealed() if found is not None else {}
    return {key: revealed.get(key) for key in TOKEN_KEYS}


def how_to(settings: Settings, found: PlatformSecrets) -> list[str]:
    """The plain output: where to log in with what. Pure."""
    from mloop.core.secrets import secrets_path
    from mloop.platform.services import urls

    u = urls(settings)
    values = found.revealed()
    return [
        f"Prefect UI   {u['prefect_ui']}",
        f"  login string: {values['prefect_auth_string']}",
        f"  (clients: PREFECT_API_AUTH_STRING='{values['prefect_auth_string']}')",
        f"MLflow UI    {u['mlflow_ui']}",
        f"  user: {values['mlflow_username']}   password: {values['mlflow_password']}",
        "  (clients: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)",
        f"API          {u['serving']} (/predict, /feedback, /admin/rollout), {u['webhook']} (/alerts, /notifications)",
        f"  header: Authorization: Bearer {values['api_token']}",
        f"Stored in {secrets_path(settings.state.root)} (mode 0600); keep it private.",
    ]


def token(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Print the credentials of the platform: Prefect UI login, MLflow user and password, the API bearer token."""
    with user_errors(json_out):
        settings = load_settings()
        found = settings.credentials()
    if json_out:
        print_json(token_document(found))
        return
    if found is None:
        console().print("auth is off (MLOOP_AUTH=false): no service asks for credentials.")
        return
    for line in how_to(settings, found):
        console().print(line, highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("token")(token)
