"""jwins: communication-efficient, fully decentralized learning.

>>> import jwins
>>> result = jwins.run(jwins.load_config(overrides=["rounds=2", "nodes=4"]))  # doctest: +SKIP

Bring your own parts: ``jwins.run(config, sharing=..., model=..., dataset=..., graph=...)`` takes objects or
factories; ``jwins.register_sharing / register_model / register_dataset / register_topology`` add names a config
can use; a config may also name ``"package.module:attribute"``. See docs/extending.md.
"""
from .config import Config, load as load_config
from .errors import (CheckpointError, ConfigError, DataError, JwinsError, PeerError, RunDirError, TopologyError,
                     WireError)
from .registry import register_dataset, register_model, register_sharing, register_topology

__version__ = "0.2.0"
__all__ = ["CheckpointError", "Config", "ConfigError", "DataError", "Dataset", "DatasetSpec", "JwinsError",
           "PeerError", "Result", "RunDirError", "TopologyError", "WireError", "load_config", "register_dataset",
           "register_model", "register_sharing", "register_topology", "run"]

_LAZY = {"run": "api", "Result": "experiment", "Dataset": "data", "DatasetSpec": "data"}


def __getattr__(name: str):
    if name in _LAZY:  # imported on first use: keeps `import jwins` and the CLI start-up light
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'jwins' has no attribute {name!r}")
