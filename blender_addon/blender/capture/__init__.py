"""Capture in Blender: :mod:`.render` (Cycles renders -> a ViewSet), :mod:`.data_materials` (temporary unlit
materials for the data passes), :mod:`.scene_changes` (every temporary change recorded and restored)."""
