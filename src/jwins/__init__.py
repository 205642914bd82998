"""jwins: communication-efficient, fully decentralized learning.

>>> import jwins
>>> result = jwins.run(jwins.load_config(overrides=["rounds=2", "nodes=4"]))  # doctest: +SKIP
"""
from .config import Config, load as load_config
from .errors import CheckpointError, ConfigError, DataError, JwinsError, PeerError, TopologyError, WireError

__version__ = "0.1.0"
__all__ = ["CheckpointError", "Config", "ConfigError", "DataError", "JwinsError", "PeerError", "Result",
           "TopologyError", "WireError", "load_config", "run"]


def __getattr__(name: str):
    if name in ("run", "Result"):  # imported on first use: keeps `import jwins` and the CLI start-up light
        from . import experiment

        return getattr(experiment, name)
    raise AttributeError(f"module 'jwins' has no attribute {name!r}")
