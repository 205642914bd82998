"""Binary wire format of jwins messages (layout: ``docs/wire-format.md``)."""
from jwins.wire.codecs import INDEX_CODECS, VALUE_CODECS, seeded_indices
from jwins.wire.format import FORMAT_VERSION, Layout, decode, decode_many, encode, encode_many, layout
from jwins.wire.message import Message

__all__ = [
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
    "seeded_indices",
]
