"""`simplear demo`: the lifecycle pipeline run by Kubeflow Pipelines' local runner, writing the run report."""
