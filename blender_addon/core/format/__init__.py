"""The ViewSet format: what a capture writes and every other stage reads (bpy-free).

:mod:`.viewset` (folders, passes, manifest), :mod:`.cameras` (pinhole cameras and the frame conventions),
:mod:`.images` (PNG/EXR with numpy, sRGB).
"""
