"""Rollouts for RL: the client seam, an in-process engine, and an HTTP rollout server with torch or vLLM engines."""
