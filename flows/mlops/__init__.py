"""MLflow: runs, metrics and artifacts, model logging, the registry, promotion, the pyfunc."""
