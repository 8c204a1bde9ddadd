"""The thin layer that talks to Blender (bpy): scene -> numpy, render passes -> ViewSet."""
