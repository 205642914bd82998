"""The codecs registered in :mod:`jwins.registry`, as the wire format looks them up: by name and by wire id.

:data:`INDEX_CODECS` and :data:`VALUE_CODECS` are live read-only mappings over
:data:`jwins.registry.INDEX_CODECS` / :data:`jwins.registry.VALUE_CODECS`: ``VALUE_CODECS["fpzip"]`` is the
registered codec object (its module imported on first use), iteration gives the registered names, and a codec
registered later shows up at once. Only registered names are looked up (any spelling
:meth:`~jwins.registry.Registry.canonical` accepts), never ``"package.module:attribute"`` paths: a message
names its codecs, it does not import code.

:meth:`CodecTable.by_id` maps wire ids to codecs. It is built on first use from every registered entry and
rebuilt whenever the registry changes; two registered codecs with the same wire id are an error then.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from jwins import registry as _registry
from jwins.errors import ConfigError

MAX_WIRE_ID = 255  # ids travel in one header byte


class CodecTable(Mapping):
    """Codecs of one registry: by name (``table[name]``, :meth:`lookup`) and by wire id (:meth:`by_id`).

    A codec object has at least ``name`` (its registered name) and ``id`` (its wire id, 0..255; ``-1`` for an
    index codec that only chooses among others and never appears on the wire, like ``auto``).
    """

    def __init__(self, registry: _registry.Registry, *, choosers: bool):
        self.registry = registry
        self.kind = registry.kind  # "index codec" / "value codec", as the error messages name it
        self.lowest_id = -1 if choosers else 0  # whether id -1 (chooses another codec's id) is allowed
        # (registry version, wire id -> codec, name as asked -> codec), rebuilt when the registry changes
        self._state: tuple[int | None, dict[int, Any], dict[str, Any]] = (None, {}, {})

    # -- by name

    def __getitem__(self, name: str) -> Any:
        canonical = self.registry.canonical(name) if isinstance(name, str) else None
        if canonical is None:
            raise KeyError(name)
        return self.registry.load(canonical)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.registry.canonical(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.registry.names())

    def __len__(self) -> int:
        return len(self.registry.names())

    def __repr__(self) -> str:
        return f"<{self.kind}s: {', '.join(self.registry.names())}>"

    def lookup(self, name: str) -> Any:
        """The codec registered as ``name``; ValueError naming the registered ones if there is none. Checks
        the wire ids first, as :meth:`by_id` does (the encoder's lookup: fast for a name asked before)."""
        _, _, by_name = self._current()
        codec = by_name.get(name) if isinstance(name, str) else None
        if codec is None:
            try:
                codec = self[name]
            except KeyError:
                raise ValueError(f"unknown {self.kind} {name!r}; known: {sorted(self)}") from None
            by_name[name] = codec
        return codec

    # -- by wire id

    def by_id(self) -> dict[int, Any]:
        """Wire id -> codec for every registered codec that appears on the wire (id >= 0). Raises ConfigError
        if a registered codec has no valid id or two share one. Do not modify the returned dict."""
        return self._current()[1]

    def _current(self) -> tuple[int | None, dict[int, Any], dict[str, Any]]:
        snapshot = self.registry.version  # the tables follow every registration
        state = self._state
        if snapshot == state[0]:
            return state
        table: dict[int, Any] = {}
        owners: dict[int, str] = {}
        for name in self.registry.names():
            codec = self.registry.load(name)
            wire_id = getattr(codec, "id", None)
            valid = isinstance(wire_id, int) and not isinstance(wire_id, bool)
            if not valid or not self.lowest_id <= wire_id <= MAX_WIRE_ID:
                raise ConfigError(f"{self.kind} {name!r} has wire id {wire_id!r}; a {self.kind}'s id must be an "
                                  f"integer in {self.lowest_id}..{MAX_WIRE_ID}")
            if wire_id < 0:
                continue
            if wire_id in owners:
                raise ConfigError(f"{self.kind}s {owners[wire_id]!r} and {name!r} both have wire id {wire_id}; "
                                  f"every registered {self.kind} needs its own")
            table[wire_id] = codec
            owners[wire_id] = name
        self._state = state = (snapshot, table, {})
        return state


INDEX_CODECS = CodecTable(_registry.INDEX_CODECS, choosers=True)
VALUE_CODECS = CodecTable(_registry.VALUE_CODECS, choosers=False)
