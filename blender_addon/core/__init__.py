"""bpy-free core of the GroupEdit extension.

Everything here runs with the standard library and numpy alone, so it is testable with plain pytest
and usable outside Blender (for example to read a ViewSet in another tool).
"""
