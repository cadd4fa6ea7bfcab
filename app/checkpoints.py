"""Where a checkpoint comes from on this server: two uploaded files, a hub id, or (on loopback
only) a folder; and which backbone it may make the server build.

On a public server (``allow_local_checkpoints=False``) no text field or uploaded file may make
the server open a path of its own — a checkpoint is an upload or a hub id — and a checkpoint may
only name a listed backbone (no ``MODEL:/path``, no arbitrary hub model); error texts never
depend on whether a server path exists. Uploaded checkpoints are kept in memory by the sha256 of
both files, at most ``MAX_UPLOADED_CHECKPOINTS``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hvl_core import CheckpointError, load_checkpoint
from hvl_core.backbones import list_backbones
from hvl_core.backbones.catalog import CATALOG, LABEL_ONLY
from hvl_core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, Checkpoint, hub_files
from hvl_core.hub import is_hub_id
from hvl_core.scope import SCOPE_WEIGHTS

from .errors import UserError

#: uploaded checkpoints kept in memory (by the sha256 of both files)
MAX_UPLOADED_CHECKPOINTS = 4
#: the backbones a page may switch to (real weights, from the catalog), besides the server's own
CHOOSABLE_BACKBONES = tuple(i.name for i in CATALOG if i.openclip or i.kind == LABEL_ONLY)
#: set to 1 to let a checkpoint on a public server build any registered backbone (the ``*-random``
#: twins too: each costs seconds of CPU and ~1 GB, during which the other users' events wait)
ENV_ALLOW_CUSTOM_BACKBONES = "HVL_ALLOW_CUSTOM_BACKBONES"


def custom_backbones_allowed() -> bool:
    return os.environ.get(ENV_ALLOW_CUSTOM_BACKBONES, "").strip().lower() in ("1", "true", "yes", "on")


def _load_pair(weights, config, label: str, scope=None) -> Checkpoint:
    """``load_checkpoint`` on two files (three with a stage 1, ``scope``) that may sit in different
    folders (gradio keeps each upload in its own): linked side by side in a temporary folder
    removed at once (everything is read into memory). Messages name ``label``, never the server's
    temporary paths."""
    with tempfile.TemporaryDirectory(prefix="hvl-ckpt-") as d:
        os.symlink(os.path.abspath(weights), Path(d) / WEIGHTS_NAME)
        os.symlink(os.path.abspath(config), Path(d) / CONFIG_NAME)
        if scope is not None:
            os.symlink(os.path.abspath(scope), Path(d) / SCOPE_WEIGHTS)
        try:
            ck = load_checkpoint(d)
        except CheckpointError as e:
            raise CheckpointError(str(e).replace(os.path.basename(d), label)) from None
        except (OSError, RecursionError, ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"checkpoint {label}: unreadable or invalid ({type(e).__name__})") from None
    ck.source = label
    return ck


def checkpoint_ref(text: str | None, files) -> tuple | None:
    """What the checkpoint inputs ask for, before loading anything."""
    files = [f for f in (files or []) if f]
    if files:
        return ("upload-files", tuple(str(f) for f in files))
    text = (text or "").strip()
    return ("path", text) if text else None


class CheckpointSources:
    """The checkpoint half of ``ModelService``: it needs ``allow_local_checkpoints``,
    ``backbone_name``, ``_backbones``, ``_uploaded`` and ``_lock`` from it."""

    def check_backbone_name(self, name) -> str:
        """A backbone a checkpoint may ask this server to build: on a public server the server's
        own, a built one or one the page offers (``CHOOSABLE_BACKBONES``); any registered one only
        with ``HVL_ALLOW_CUSTOM_BACKBONES=1``; never ``MODEL:/a/path`` or an arbitrary hub model."""
        if not isinstance(name, str) or not name.strip():
            raise UserError("the checkpoint does not name its backbone")
        if self.allow_local_checkpoints:
            return name
        listed = {self.backbone_name, *(bb.name for bb in self._backbones.values()), *CHOOSABLE_BACKBONES}
        if custom_backbones_allowed():
            listed |= set(list_backbones())
        if name not in listed:
            raise UserError(
                f"this server runs only its listed backbones ({', '.join(sorted(listed))}); "
                "the checkpoint names another one"
            )
        return name

    def resolve_checkpoint(self, ref: tuple | None) -> tuple[tuple | None, Checkpoint | None]:
        """``checkpoint_ref`` → (the key a ``Spec`` keeps, the loaded checkpoint). The key holds the
        sha256 of both files, so a recalibrated or relabelled checkpoint is another model."""
        if ref is None:
            return None, None
        kind, value = ref[0], ref[1]
        if kind == "upload-files":
            ck, digest = self._load_uploaded(value)
            with self._lock:
                self._uploaded[digest] = ck
                self._uploaded.move_to_end(digest)
                while len(self._uploaded) > MAX_UPLOADED_CHECKPOINTS:
                    self._uploaded.popitem(last=False)
            return ("upload", digest), ck
        if kind == "upload":
            with self._lock:
                if value not in self._uploaded:
                    raise UserError("the uploaded checkpoint is no longer in memory; upload its files again")
                return ref, self._uploaded[value]
        text = str(value).strip()
        if not self.allow_local_checkpoints:
            # decided from the text alone: whether such a path exists on the server never matters
            if not is_hub_id(text):
                raise UserError(
                    "checkpoint folders on the server are disabled here; upload the checkpoint's "
                    f"{WEIGHTS_NAME} and {CONFIG_NAME}, or give a Hugging Face id (org/name)"
                )
            ck = self._hub_checkpoint(text)
        else:
            ck = load_checkpoint(os.path.expanduser(text))
        return ("path", text, ck.fingerprint()), ck

    @staticmethod
    def _hub_checkpoint(repo: str) -> Checkpoint:
        """A checkpoint from the hub only (never a local folder of the same name), either layout."""
        try:
            weights, cfg = hub_files(repo)
        except CheckpointError as e:
            raise UserError(str(e).split("; pass a local")[0]) from None
        scope = weights.parent / SCOPE_WEIGHTS  # the hub client put it beside them, if the repo has one
        return _load_pair(weights, cfg, f"hub {repo}", scope if scope.is_file() else None)

    @staticmethod
    def _load_uploaded(paths) -> tuple[Checkpoint, str]:
        scope = [p for p in paths if Path(p).name == SCOPE_WEIGHTS]
        weights = [p for p in paths if str(p).endswith(".safetensors") and Path(p).name != SCOPE_WEIGHTS]
        configs = [p for p in paths if str(p).endswith(".json")]
        if len(weights) != 1 or len(configs) != 1 or len(scope) > 1 or len(paths) != 2 + len(scope):
            raise UserError(
                f"upload the files of a checkpoint folder: {WEIGHTS_NAME} and {CONFIG_NAME} "
                f"(and {SCOPE_WEIGHTS} when it has one)"
            )
        ck = _load_pair(
            weights[0],
            configs[0],
            f"uploaded {Path(configs[0]).name} + {Path(weights[0]).name}",
            scope[0] if scope else None,
        )
        return ck, ck.fingerprint()
