"""Publishing scoring runs as complete sets: dated runs, per-run folders, the pointer to the
latest run, retention and the run index. Plain files and locks: no Prefect, no MLflow."""
