"""Errors raised by jwins. Each names what is wrong and how to fix it."""


class JwinsError(Exception):
    """Base class of every error jwins raises on purpose."""


class ConfigError(JwinsError, ValueError):
    """A configuration key, value or combination is invalid."""


class WireError(JwinsError, ValueError):
    """Bytes received from a peer do not form a valid message."""


class DataError(JwinsError):
    """A dataset is missing, malformed or cannot be partitioned as asked."""


class TopologyError(JwinsError, ValueError):
    """A communication graph is invalid (disconnected, impossible degree, bad edge file)."""


class CheckpointError(JwinsError):
    """A checkpoint is damaged or does not belong to this configuration."""


class PeerError(JwinsError):
    """A peer process stopped answering or died."""


class RunDirError(JwinsError):
    """A run directory cannot be used as asked (not empty, a file, not writable)."""
