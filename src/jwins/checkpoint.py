"""Checkpoints: the full state of a run at a round boundary, in one ``.npz`` file written atomically.

A checkpoint holds the parameters, the optimizer state, the sharing state (every tensor field of its
NamedTuple), the metrics so far and the configuration it belongs to. Random streams are stateless functions
of (seed, node, round), so no generator state is needed. Files are read with ``allow_pickle=False``: a
checkpoint can hold numbers and strings only. In the distributed runtime each rank writes its own shard.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError

FORMAT = 1
# Keys that may change between the interrupted run and its resumption without changing its numbers.
RESUMABLE_CHANGES = ("rounds", "checkpoint", "engine", "import_paths")


def comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}


def save(path: Path, *, round: int, config: dict, params: torch.Tensor, momentum: torch.Tensor | None,
         sharing_state: Any, metrics: list[dict], extra: dict | None = None) -> None:
    """Write atomically: to ``<path>.tmp``, flushed to disk, then renamed over ``path``."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "round": np.array(round),
        "config": np.array(json.dumps(config, sort_keys=True)),
        "metrics": np.array(json.dumps(metrics)),
        "extra": np.array(json.dumps(extra or {})),
        "params": params.detach().cpu().numpy(),
    }
    if momentum is not None:
        arrays["momentum"] = momentum.detach().cpu().numpy()
    for name, value in sharing_state._asdict().items():
        if isinstance(value, torch.Tensor):
            arrays[f"sharing.{name}"] = value.detach().cpu().numpy()
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)  # a rank on another machine may not have the run directory yet
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Loaded:
    def __init__(self, round: int, metrics: list[dict], params: np.ndarray, momentum: np.ndarray | None,
                 sharing: dict[str, np.ndarray], extra: dict):
        self.round, self.metrics, self.params, self.momentum = round, metrics, params, momentum
        self.sharing, self.extra = sharing, extra


def load(path: Path, *, config: dict, shape: tuple[int, int]) -> Loaded:
    """Read a checkpoint, refusing a damaged one or one that belongs to a different configuration."""
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; the run wrote none (set checkpoint.every) or it was moved")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged ({type(e).__name__}: {e}); "
                              "delete it to start over, or resume from an intact copy") from None
    for key in ("format", "round", "config", "metrics", "params"):
        if key not in data:
            raise CheckpointError(f"checkpoint {path} is incomplete: it has no {key!r}")
    if int(data["format"]) != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {int(data['format'])}; this jwins reads {FORMAT}")
    saved = comparable(json.loads(str(data["config"])))
    wanted = comparable(json.loads(json.dumps(config, sort_keys=True)))
    if saved != wanted:
        diff = sorted(_diff(saved, wanted))
        raise CheckpointError(f"checkpoint {path} belongs to a different configuration (differs in "
                              f"{', '.join(diff[:5])}); resume with the run's own config.json")
    if tuple(data["params"].shape) != tuple(shape):
        raise CheckpointError(f"checkpoint {path} holds parameters of shape {tuple(data['params'].shape)}, "
                              f"this run needs {tuple(shape)}")
    sharing = {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith("sharing.")}
    return Loaded(int(data["round"]), json.loads(str(data["metrics"])), data["params"], data.get("momentum"),
                  sharing, json.loads(str(data.get("extra", np.array("{}")))))


def restore_state(template: Any, arrays: dict[str, np.ndarray], device: torch.device) -> Any:
    """The sharing state ``template`` (a NamedTuple from ``init``) with its tensor fields read back."""
    fields = {}
    for name, value in template._asdict().items():
        if isinstance(value, torch.Tensor):
            if name not in arrays:
                raise CheckpointError(f"checkpoint has no sharing state {name!r}: it was written by another "
                                      "sharing algorithm")
            if tuple(arrays[name].shape) != tuple(value.shape):
                raise CheckpointError(f"checkpoint's sharing state {name!r} has shape {arrays[name].shape}, "
                                      f"expected {tuple(value.shape)}")
            fields[name] = torch.from_numpy(np.array(arrays[name])).to(device)
    return template._replace(**fields)


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in set(a) | set(b):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
