"""Batch restyling of many assets: a manifest, per-asset state that survives a crash, a scheduler that keeps the
edit server busy while worker processes capture and bake, and the report (bpy-free: Blender runs in the workers)."""
