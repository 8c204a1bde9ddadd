"""``groupedit batch --ray``: the batch across the machines of a Ray cluster (docs/batch.md).

- **Edits**: one warm editor per GPU as a Ray actor (:class:`EditorActor`; the model loads once per GPU, not per
  asset), each asking for one unit of ``resource`` (``GPU`` by default; any custom resource name works, e.g. for a
  cluster whose editors run on CPUs). An actor whose process dies is restarted by Ray; the edit it was running fails
  as a ``crash`` and the batch tries it again (on whichever editor is free).
- **Captures and bakes**: Ray tasks (one CPU each) that run ``groupedit capture`` / ``groupedit bake`` in a Blender
  process on whichever node has a free CPU, exactly as the local batch does.
- **Files**: on storage every node sees under the same path (the batch folder and the assets, e.g. NFS): tasks get
  paths, not data, so views and textures never travel through Ray's object store. Every node needs the project
  installed at the same path (the workers run its ``groupedit``).

``GROUPEDIT_RAY_EXIT_ONCE=<path>`` (a fault point for tests): the first edit of the cluster whose editor finds no file
at ``path`` creates it and ends its process at once, as a crash would.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import ray

from blender_addon.core.batch.manifest import BatchItem
from blender_addon.core.batch.runner import EditHandle, StageHandle
from blender_addon.core.format.viewset import ViewSet
from blender_addon.core.processes import die_with_parent

from .errors import InvalidInput
from .viewset_edit import edit_viewset, write_edited

log = logging.getLogger(__name__)

#: A killed task or actor reports this exit code (as a process killed by SIGKILL would).
CRASHED = -9


def connect(address: str) -> None:
    """Join the Ray cluster at ``address``; ``auto``: the one ``RAY_ADDRESS`` names, else a new local one."""
    if ray.is_initialized():
        return
    if address == "auto":
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)


@ray.remote(num_cpus=1, max_retries=0)
def _run_stage(argv: list[str], log_path: str) -> int:
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=die_with_parent)
        return process.wait()


class RayStages:
    """Captures and bakes as Ray tasks running ``command`` + the stage's arguments on some node."""

    def __init__(self, command: list[str]) -> None:
        self.command = command

    def start(self, args: list[str], log_path: Path) -> StageHandle:
        return _TaskHandle(_run_stage.remote([*self.command, *args], str(log_path)), log_path)


class _TaskHandle(StageHandle):
    def __init__(self, ref: Any, log_path: Path) -> None:
        self.ref, self.log_path = ref, log_path

    def poll(self) -> int | None:
        ready, _ = ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        try:
            return int(ray.get(self.ref))
        except ray.exceptions.RayError as exc:  # the task's worker (or its node) died
            with open(self.log_path, "a") as f:
                f.write(f"the Ray worker running this stage died: {type(exc).__name__}\n")
            return CRASHED

    def stop(self) -> None:
        ray.cancel(self.ref, force=True)


@ray.remote(max_restarts=-1, max_task_retries=0)
class EditorActor:
    """One editor, loaded once, editing ViewSets on shared storage."""

    def __init__(self, editor: str, config: dict[str, Any]) -> None:
        from .editors import get_editor

        self.editor = get_editor(editor, **config)

    def edit(self, views: str, instruction: str, options: dict[str, Any], description: str | None) -> dict[str, Any]:
        """Edit the ViewSet at ``views`` (:func:`..viewset_edit.edit_viewset`) and write ``<views>/edited/`` whole;
        returns the edit's record."""
        marker = os.environ.get("GROUPEDIT_RAY_EXIT_ONCE")
        if marker and not Path(marker).exists():
            Path(marker).write_text(str(os.getpid()))
            os._exit(1)
        vs = ViewSet.read(Path(views))
        result = edit_viewset(self.editor, vs, instruction, options, description)
        record = {"instruction": instruction, "description": description, "job": None, "editor": self.editor.name,
                  "result": result.metadata}
        write_edited(vs, result, record)
        return record


class RayEdits:
    """One :class:`EditorActor` per unit of ``resource`` in the cluster; up to two edits queued per editor."""

    def __init__(self, editor: str, config: dict[str, Any], resource: str = "GPU") -> None:
        from .editors import EDITORS

        if editor not in EDITORS:
            raise InvalidInput(f"unknown editor {editor!r}; available: {', '.join(sorted(EDITORS))}")
        count = int(ray.cluster_resources().get(resource, 0))
        if count < 1:
            raise InvalidInput(f"the Ray cluster has no {resource!r} resource for editors: start its nodes with GPUs, "
                               f"or name the resource the editors should use (--ray-resource)")
        self.actors = [EditorActor.options(resources={resource: 1}, num_cpus=0).remote(editor, config)
                       for _ in range(count)]
        self.load = [0] * count
        self.capacity = 2 * count

    def start(self, item: BatchItem, views: Path, job_key: str, job_id: str | None,
              job_server: str | None = None) -> EditHandle:
        i = min(range(len(self.actors)), key=self.load.__getitem__)
        options: dict[str, Any] = {} if item.seed is None else {"seed": int(item.seed)}
        ref = self.actors[i].edit.remote(str(views), item.instruction, options, item.description)
        self.load[i] += 1
        return _ActorHandle(self, i, ref)


class _ActorHandle(EditHandle):
    def __init__(self, edits: RayEdits, actor: int, ref: Any) -> None:
        self.edits, self.actor, self.ref = edits, actor, ref

    def _release(self) -> None:
        if self.actor >= 0:
            self.edits.load[self.actor] -= 1
            self.actor = -1

    def step(self) -> tuple[bool, tuple[str, str] | None]:
        ready, _ = ray.wait([self.ref], timeout=0)
        if not ready:
            return False, None
        self._release()
        try:
            ray.get(self.ref)
        except ray.exceptions.RayActorError as exc:
            return True, ("crash", f"the editor's process died ({type(exc).__name__}); Ray restarts it")
        except ray.exceptions.RayTaskError as exc:
            return True, ("server", str(exc.cause) if exc.cause is not None else str(exc))
        return True, None

    def stop(self) -> None:
        self._release()
        ray.cancel(self.ref)
