"""The Core engine's wire contract: what it sends a service and what it expects back.

Only pydantic and the standard library are imported here, so every process role can
use these models without pulling in Prefect, S3 or the services' code.
"""
