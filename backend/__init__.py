"""The GroupEdit edit server: a separate process that owns the models and runs one GPU job at a time."""

from blender_addon import __version__  # the one place the version is written

__all__ = ["__version__"]
