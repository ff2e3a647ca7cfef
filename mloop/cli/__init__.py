"""Entry points: the Typer CLI (``mloop``) and the demo. The top layer: imports anything below."""
