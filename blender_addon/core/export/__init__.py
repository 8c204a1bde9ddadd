"""Exports of a ViewSet for downstream tools (bpy-free): COLMAP text models, nerfstudio ``transforms.json`` and Must3R
image folders, each with the capture's exact cameras (docs/exports.md)."""
