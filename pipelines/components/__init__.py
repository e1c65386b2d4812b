"""Lightweight components on the project's base image; each runs its stage through a Launcher (local or Kubernetes)."""
