"""`simplear demo`: the lifecycle pipeline run by Kubeflow Pipelines' local runner, and the run report it writes."""
