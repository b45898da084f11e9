"""The retraining gates that run outside MLflow: the data gate before fitting
(``flows.gates.data_gate``); the promotion gate's rules are ``flows.mlops.promotion``."""
