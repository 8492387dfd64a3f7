"""Per-user serving state: behavior logs, cached encoder states and their stores."""
