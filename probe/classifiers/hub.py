"""A classifier named by its Hugging Face hub id (``google/vit-base-patch16-224``, ``timm/resnet50.a1_in1k``).

The repository's configuration and weights are fetched into the Hugging Face cache, as transformers and timm do
themselves, and the cached folder is then loaded like a local one (a transformers image classifier or a timm
folder). Only JSON, text and safetensors files are fetched, and ``pytorch_model.bin`` where a repository has no
safetensors (read as tensors only): nothing that runs code. With ``HF_HUB_OFFLINE=1`` only the cache is read.
"""

from __future__ import annotations

from pathlib import Path

from probe.errors import ClassifierError
from probe.hub import hub_unavailable

_PATTERNS = ["*.json", "*.txt", "*.safetensors"]


def _error(repo_id: str, e: Exception, unavailable: str | None) -> ClassifierError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if unavailable is not None:
        where = f"is not a local file or folder, has no cached copy, and {unavailable}"
    elif isinstance(e, GatedRepoError):
        where = "is a gated repository on the hub (accept its terms, then `hf auth login`)"
    elif isinstance(e, RepositoryNotFoundError):
        where = "is not a local file or folder, and the hub has no such model (or it is private: `hf auth login`)"
    else:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        where = f"is not a local file or folder, and the hub is unreachable ({first})"
    return ClassifierError(f"model {repo_id} {where}; download it where the hub is reachable (`hf download {repo_id} "
                           "--local-dir DIR`) and pass DIR, or check the path")


def hub_folder(repo_id: str) -> Path:
    """The cached folder of ``repo_id``'s configuration and weights, fetched if need be; a one-line
    :class:`ClassifierError` when it cannot be had."""
    from huggingface_hub import hf_hub_download, snapshot_download

    unavailable = hub_unavailable()  # only the cache is read, at once, when the hub cannot be asked
    offline = unavailable is not None
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=_PATTERNS, local_files_only=offline))
        if not any(folder.glob("*.safetensors")):  # an older repository: its weights as a torch file
            hf_hub_download(repo_id, "pytorch_model.bin", local_files_only=offline)
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises many kinds; each becomes one line
        raise _error(repo_id, e, unavailable) from e
    return folder
