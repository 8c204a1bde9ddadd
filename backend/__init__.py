"""The GroupEdit edit server: a separate process that owns the models and runs one GPU job at a time."""

__version__ = "0.1.0"
