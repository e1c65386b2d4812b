"""Kubeflow Pipelines v2 components and pipelines of the platform; `python -m pipelines.compile` compiles them."""
