"""GroupEditing: consistent edits of a group of views with a Wan2.1-VACE video transformer.

Modules (import them directly; this package imports nothing heavy on its own):

* :mod:`.rope` - Wan rotary tables from arbitrary per-token (t, h, w) coordinates.
* :mod:`.correspondence` - Ge-RoPE displacement fields and Identity-RoPE offsets from world-position passes
  and cameras (numpy only), and the per-token coordinates built from them.
* :mod:`.budget` - joint resizing of all views to one global pixel budget, and back.
* :mod:`.conditioning` - the pseudo-video: one latent frame per view, VACE context, mask dilation and grey fill.
* :mod:`.transformer` - :class:`~.transformer.GroupEditingTransformer`, a ``WanVACETransformer3DModel`` with
  per-branch RoPE coordinates and geometry tokens as extra keys/values.
* :mod:`.pipeline` - :class:`~.pipeline.GroupEditingPipeline`, the sampler that ties them together.

Weight checks, loading and downloads have their own modules in this package.
"""
