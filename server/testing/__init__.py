"""Test-only fault injection, wired in by ``create_app`` only when the ``faults`` setting asks."""
