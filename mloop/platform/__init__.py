"""Platform layer: local services (start, stop, supervise), deploy of prefect.yaml, status, and the
one light Prefect REST client. Imports flows and capabilities; never the CLI."""
