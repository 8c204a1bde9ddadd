"""The GroupEdit edit server (a separate process that owns the models); see docs/architecture.md."""
