"""The pipeline that Prefect runs for every task, and the worker that runs it."""
