"""Running the stages: Kubernetes manifests (pure functions), the local and Kubernetes launchers, run inspection."""
