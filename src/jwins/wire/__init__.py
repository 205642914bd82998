"""Binary wire format of jwins messages (layout: ``docs/wire-format.md``)."""
from jwins.wire.codecs import INDEX_CODECS, VALUE_CODECS, seeded_indices
from jwins.wire.format import FORMAT_VERSION, Layout, decode, encode, layout
from jwins.wire.message import Message

__all__ = [
    "FORMAT_VERSION",
    "INDEX_CODECS",
    "Layout",
    "Message",
    "VALUE_CODECS",
    "decode",
    "encode",
    "layout",
    "seeded_indices",
]
