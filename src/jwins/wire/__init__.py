"""Binary wire format of jwins messages (layout: ``docs/wire-format.md``).

Modules: :mod:`~jwins.wire.message` (the Message), :mod:`~jwins.wire.format` (encode, decode, layout),
:mod:`~jwins.wire.index_codecs`, :mod:`~jwins.wire.value_codecs`, :mod:`~jwins.wire.fpzip` and
:mod:`~jwins.wire.pcodec` (the codecs, registered in :mod:`jwins.registry`), :mod:`~jwins.wire.tables`
(registered codecs by name and by wire id), :mod:`~jwins.wire.bits` (bit-level helpers) and
:mod:`~jwins.wire.fpzip_helpers` (fpzip helper processes).
``INDEX_CODECS`` / ``VALUE_CODECS`` map the registered names to the codec objects.
"""
from jwins.wire.format import DEFAULT_MAX_DIM, FORMAT_VERSION, Layout, decode, decode_many, encode, encode_many, layout
from jwins.wire.index_codecs import seeded_indices
from jwins.wire.message import Message
from jwins.wire.tables import INDEX_CODECS, VALUE_CODECS
from jwins.wire.value_codecs import roundtrip

__all__ = [
    "DEFAULT_MAX_DIM",
    "FORMAT_VERSION",
    "INDEX_CODECS",
    "Layout",
    "Message",
    "VALUE_CODECS",
    "decode",
    "decode_many",
    "encode",
    "encode_many",
    "layout",
    "roundtrip",
    "seeded_indices",
]
