"""GroupEditing: consistent edits of a group of views with a Wan2.1-VACE video transformer.

Modules (import them directly; this package imports nothing heavy on its own):

* :mod:`.recipe` - the presets (``release``, ``exact``, ``paper``, ``grid``): what an edit feeds the model.
* :mod:`.settings` - per-edit settings: defaults, ranges and help in one place (server flags, job options).
* :mod:`.prompt` - the text encoded: the release's template, a description of the result, the negative prompt.
* :mod:`.contour_flow` - the release's Ge-RoPE flow from masks: thin-plate splines between mask contours.
* :mod:`.correspondence` - exact Ge-RoPE displacements and Identity-RoPE offsets from position passes and cameras.
* :mod:`.coordinates` - per-token RoPE coordinates of a group from either flow, and the geometry tokens' positions.
* :mod:`.rope` - Wan rotary tables from arbitrary per-token (t, h, w) coordinates.
* :mod:`.vggt` / :mod:`.geometry_tokens` - VGGT's aggregator and the geometry tokens made with it.
* :mod:`.budget` - joint resizing of all views to one global pixel budget, and back.
* :mod:`.conditioning` - the pseudo-video: one latent frame per view, VACE context, mask dilation and grey fill,
  the feathered paste-back.
* :mod:`.transformer` - :class:`~.transformer.GroupEditingTransformer`, a ``WanVACETransformer3DModel`` with
  per-branch RoPE coordinates and geometry tokens as extra keys/values.
* :mod:`.pipeline` - :class:`~.pipeline.GroupEditingPipeline`, which ties them together.

Files and loading have their own modules: :mod:`.sources` (hub names, docs, advice), :mod:`.base_model` (the
diffusers Wan2.1-VACE directory), :mod:`.weights` and :mod:`.keymap` (the GroupEditing weights file),
:mod:`.loader` (a ready pipeline), :mod:`.download`.
"""
