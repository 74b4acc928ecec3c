"""The shared vocabulary every part speaks: samples and points, the measurement schema, quality,
units, backoff, secrets, and the interfaces between inputs, the pipeline and the historians.

It depends on nothing else of ours, so connectors, delivery, historians, the unified namespace,
analytics and dashboards can all name a `Sample` without importing one another.
"""
