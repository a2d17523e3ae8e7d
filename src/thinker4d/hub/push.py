"""Uploading a staged folder with `huggingface_hub`, and the folder `thinker4d push` stages into."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from huggingface_hub import HfApi

from ..data.writer import COMPLETE, is_complete
from ..redact import assert_no_secrets
from ..templating import _version
from .dataset_folder import stage_dataset


logger = logging.getLogger(__name__)


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    api: HfApi | None = None,
):
    """Upload `folder` to the Hub with `HfApi.create_repo` (+ `create_branch` for a non-main revision) and
    `HfApi.upload_folder`. The token comes from huggingface_hub's usual sources (`HF_TOKEN`, `hf auth login`); it is
    never passed through or logged here. Returns the `CommitInfo`."""
    folder = Path(folder)
    assert_no_secrets(folder)
    api = api if api is not None else HfApi()
    api.create_repo(repo_id=repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id=repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    logger.info("Uploading %s to %s (%s, revision %s)", folder, repo_id, repo_type, revision or "main")
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type=repo_type,
        revision=revision,
        commit_message=commit_message or f"Upload {repo_type} with thinker4d {_version()}",
    )


def staging_dir(dry_run: str | os.PathLike | None):
    """A context manager yielding the folder to stage into: `dry_run` (must be new or empty) or a temporary folder."""
    if dry_run is None:
        return tempfile.TemporaryDirectory(prefix="thinker4d-push-")
    path = Path(dry_run)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"--dry-run folder {path} exists and is not empty; pass a new or empty folder.")
    path.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(path))


def push_dataset(output_dir, repo_id: str, private: bool | None = None, license: str | None = None, api=None):
    """Push a finished synthesis folder to the Hub as a dataset ([`stage_dataset`] + [`push_folder`]): the rows
    `datasets.load_dataset(output_dir)` returns, and a card whose license is `license` or, by default, the sources'.

    Raises:
        RuntimeError: when the folder is not complete (no `COMPLETE` marker).
    """
    output_dir = Path(output_dir)
    if not is_complete(output_dir):
        raise RuntimeError(
            f"{output_dir} is not a finished synthesis (no {COMPLETE} marker); finish it with "
            f"`thinker4d synthesize --output_dir {output_dir} --resume` and the same settings first."
        )
    with tempfile.TemporaryDirectory(prefix="thinker4d-synth-push-") as staging:
        stage_dataset(output_dir, staging, repo_id, license=license)
        return push_folder(staging, repo_id, repo_type="dataset", private=private, api=api)


__all__ = ["push_dataset", "push_folder", "staging_dir"]
