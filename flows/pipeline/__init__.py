"""The scoring pipeline and the job machinery around the model library.

Reading ahead, validating and quarantining rows, scoring, writing behind, row accounting,
atomic and staged outputs, memory trimming and the one-pass training sampler: what a job
needs and an estimator does not. Nothing here imports Prefect or MLflow.
"""
