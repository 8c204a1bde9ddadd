"""The bake's Blender side: :mod:`.textures` (base-colour images -> numpy) and :mod:`.apply_texture` (write the new
textures, hook them into material copies, switch back)."""
