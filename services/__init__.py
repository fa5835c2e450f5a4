"""The processing code of the services that ship with the project, one module each.

A service module defines `DESCRIPTION` (a `ServiceDescription`) and
`process(inputs) -> outputs`, mapping field names to `Blob`s. Everything else (the
flow, the routes, the input checks) comes from the shared code.
"""
