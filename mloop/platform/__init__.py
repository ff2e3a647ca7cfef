"""Platform layer: the local services (``services``: start, stop, supervise), deploying onto Prefect
(``deploy``), ``status``, ``up``/``down`` (``local``), how the prediction service is started
(``serve``), and the one light Prefect REST client plus the serving client (``client``). Imports
flows and capabilities; never the CLI."""
