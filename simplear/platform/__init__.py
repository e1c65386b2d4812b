"""Everything that talks to a cluster."""
