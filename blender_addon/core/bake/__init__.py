"""Baking views back into textures (bpy-free).

:mod:`.uv_raster` (texels -> surface), :mod:`.gather` (per-texel gather from the views with visibility and
weights), :mod:`.fill` (texels no view saw), :mod:`.edit_bake` (an edited view -> albedo change, lighting
removal), :mod:`.detail_transfer` (the original's detail back into a baked edit), :mod:`.restyle` (a ViewSet's
edit into one texture per material). Writing textures into Blender is :mod:`blender_addon.blender.bake`.
"""
