"""The names of the swappable parts: one :class:`Registry` per kind, shared by built-ins and users.

A config value that names a part (``sharing.algorithm``, ``model.name``, ``data.name``, ``topology.kind``) is
either a registered name or ``"package.module:attribute"``. The attribute is a factory, imported with the working
directory and the config file's folder on the import path; the section's ``options`` table is passed to it as
keyword arguments. Built-ins are registered below by that same ``"module:attribute"`` form, so this module
imports none of them (and stays light): each is imported the first time it is used.

>>> SHARING.canonical("JWINS")
'jwins'
>>> "topk" in SHARING.names()
True
>>> is_import_path("mypkg.algos:gossip_one"), is_import_path("gossip")
(True, False)
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from .errors import ConfigError, JwinsError

_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_import_path(value: str) -> bool:
    """Whether ``value`` has the form ``package.module:attribute``."""
    return bool(_PATH.match(value))


class Entry(NamedTuple):
    name: str
    target: Any                  # "module:attribute", or the object itself (registered from Python)
    info: Mapping[str, Any]      # what the kind records about its parts (aliases, keys, ...)


class Registry:
    """Names -> factories of one kind of part. ``key`` is the config key that names them (for error messages)."""

    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._loaded: dict[str, Any] = {}
        self.version = 0  # bumped by every registration: caches of the registered parts compare it

    def register(self, name: str, target: Any = None, /, **info: Any):
        """Add ``name``: ``register("x", factory)``, ``register("x", "pkg.mod:attr")`` or, as a decorator,
        ``@register("x")``. ``info["aliases"]`` lists other spellings the config accepts. Registering a name
        again replaces it (a user may shadow a built-in on purpose)."""
        if target is None:
            def decorator(obj: Any) -> Any:
                self.register(name, obj, **info)
                return obj
            return decorator
        if not isinstance(name, str) or not name or ":" in name:
            raise ValueError(f"a {self.kind} name must be a non-empty string without ':', got {name!r}")
        if isinstance(target, str) and not is_import_path(target):
            raise ValueError(f"{target!r} is not of the form 'package.module:attribute'")
        key = _fold(name)
        self._entries[key] = Entry(name, target, dict(info))
        self.version += 1
        self._loaded.pop(key, None)
        for alias in info.get("aliases", ()):
            self._aliases[_fold(alias)] = key
        return target

    def unregister(self, name: str) -> None:
        """Remove ``name`` (and its aliases); KeyError if it is not registered."""
        key = _fold(self.canonical(name) or name)
        entry = self._entries.pop(key)
        for alias in entry.info.get("aliases", ()):
            self._aliases.pop(_fold(alias), None)
        self._loaded.pop(key, None)
        self.version += 1

    def names(self) -> list[str]:
        return [e.name for e in self._entries.values()]

    def canonical(self, name: str) -> str | None:
        """The registered name that ``name`` spells (case, ``_`` for ``-`` and aliases forgiven), or None. A
        registered name always wins over another entry's alias: a user's ``"ml"`` is never read as movielens."""
        key = _fold(name)
        entry = self._entries.get(key) or self._entries.get(self._aliases.get(key, key))
        return entry.name if entry else None

    def entry(self, name: str) -> Entry:
        canonical = self.canonical(name)
        if canonical is None:
            raise ConfigError(self._unknown(name))
        return self._entries[_fold(canonical)]

    def check(self, value: str) -> str:
        """A config value as stored: the canonical registered name, or an import path kept as given."""
        canonical = self.canonical(value)
        if canonical is not None:
            return canonical
        if is_import_path(value) or value.startswith(PYTHON_OBJECT):
            return value
        raise ConfigError(self._unknown(value))

    def _unknown(self, value: str) -> str:
        return (f"{self.key} = {value!r} is not a registered {self.kind}; choose one of: {', '.join(self.names())}, "
                "or name your own factory as 'package.module:attribute'")

    def load(self, value: str, search: Iterable[str] = ()) -> Any:
        """The object ``value`` names: a registered part (imported on first use) or ``module:attribute``."""
        if value.startswith(PYTHON_OBJECT):
            raise ConfigError(f"{self.key} = {value!r} was a Python object given to jwins.run; give it again "
                              f"(jwins.run(config, {_API_ARGUMENT.get(self.key, 'part')}=...)) or name it as "
                              "'package.module:attribute'")
        canonical = self.canonical(value)
        if canonical is None:
            if not is_import_path(value):
                raise ConfigError(self._unknown(value))
            return import_object(value, key=self.key, search=search)
        key = _fold(canonical)
        if key not in self._loaded:
            target = self._entries[key].target
            self._loaded[key] = import_object(target, key=self.key) if isinstance(target, str) else target
        return self._loaded[key]


PYTHON_OBJECT = "python:"   # how a config records a part given to jwins.run as an object with no import path
_API_ARGUMENT = {"sharing.algorithm": "sharing", "model.name": "model", "data.name": "dataset",
                 "topology.kind": "graph"}


def _fold(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def import_object(path: str, *, key: str, search: Iterable[str] = ()) -> Any:
    """Import ``package.module:attribute`` with the working directory and ``search`` on the import path (for
    the import only: ``sys.path`` is as it was afterwards); a missing module or attribute is a one-line
    ConfigError naming ``key``."""
    module_name, _, attribute = path.partition(":")
    added = []
    for folder in [os.getcwd(), *search]:
        if folder and folder not in sys.path:
            sys.path.insert(0, folder)
            added.append(folder)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name) and e.name.split(".")[0] == module_name.split(".")[0]:
            raise ConfigError(f"{key} = {path!r}: no module named {e.name!r} (looked in the working directory, "
                              "the config file's folder and the installed packages)") from None
        raise ConfigError(f"{key} = {path!r}: importing {module_name} failed: {e}") from None
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a user's module may raise anything at import
        raise ConfigError(f"{key} = {path!r}: importing {module_name} raised {type(e).__name__}: {e}") from None
    finally:
        for folder in added:
            if folder in sys.path:
                sys.path.remove(folder)
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{key} = {path!r}: module {module_name} has no attribute {attribute!r}") from None
    return obj


def import_name(obj: Any) -> str | None:
    """``module:qualname`` under which ``obj`` can be imported again, or None (a lambda, a local object)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    try:
        if import_object(f"{module}:{qualname}", key="") is obj:
            return f"{module}:{qualname}"
    except ConfigError:
        pass
    return None


def call(factory: Callable[..., Any], *, key: str, options: Mapping[str, Any] = {},
         offered: Mapping[str, Any] = {}) -> Any:
    """``factory(**what_it_takes_of_offered, **options)``. Every option must be a parameter of the factory (or
    it takes ``**kwargs``). An offered value (what the loop knows: metadata, section keys) is passed if the
    factory names it as a parameter; a factory that names none of them and takes ``**kwargs`` gets them all
    (one that names some has said what it uses: networkx's generators, whose ``**backend_kwargs`` are not
    ours, get only ``n`` and ``seed``). A factory that raises is a one-line ConfigError naming ``key``."""
    name = getattr(factory, "__name__", type(factory).__name__)
    if not callable(factory):
        raise ConfigError(f"{key}: {name!r} is not callable; name a factory (a function or a class)")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins: pass everything
        accepts_any, params = True, {}
    else:
        params = {p.name: p for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        accepts_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [k for k in options if k not in params and not accepts_any]
    if unknown:
        takes = ", ".join(params) or "no options"
        raise ConfigError(f"{key.split('.')[0]}.options.{unknown[0]}: {name} takes no option {unknown[0]!r} "
                          f"(it takes: {takes})")
    named = {k: v for k, v in offered.items() if k in params}
    kwargs = dict(offered) if accepts_any and not named else named
    kwargs.update(options)
    try:
        return factory(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{key}: {e}") from None
    except JwinsError:  # already says what is wrong and how to fix it (a missing dataset, a bad graph)
        raise
    except Exception as e:  # noqa: BLE001 - a user's factory may raise anything
        raise ConfigError(f"{key}: {name}({_show(kwargs)}) raised {type(e).__name__}: {e}") from None


def _show(kwargs: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return text if len(text) <= 120 else text[:117] + "..."


# ----------------------------------------------------------------------------------------------- the kinds

SHARING = Registry("sharing algorithm", "sharing.algorithm")
MODELS = Registry("model", "model.name")
DATASETS = Registry("dataset", "data.name")
TOPOLOGIES = Registry("topology", "topology.kind")
INDEX_CODECS = Registry("index codec", "wire.index_codec")
VALUE_CODECS = Registry("value codec", "wire.value_codec")

# Sharing: ``keys`` are the [sharing] keys a built-in reads (documented aliases of its options); ``everything``
# the overrides under which every node sends its whole model every round (the contract tests use them). An
# algorithm that needs every message to arrive says so itself (``reliable_links = True``, checked by world.py).
SHARING.register("full", "jwins.sharing.full:full", keys=(), everything=())
SHARING.register("subsample", "jwins.sharing.subsample:subsample", keys=("alpha", "metadata_cap"),
                 everything=("sharing.alpha=1.0",))
SHARING.register("topk", "jwins.sharing.topk:topk",
                 keys=("alpha", "metadata_cap", "accumulation", "accumulate_averaging", "selection"),
                 everything=("sharing.alpha=1.0",))
SHARING.register("choco", "jwins.sharing.choco:choco", keys=("alpha", "gamma", "compressor"),
                 everything=("sharing.alpha=1.0", "sharing.gamma=1.0"))
SHARING.register("jwins", "jwins.sharing.jwins:jwins",
                 keys=("alphas", "transform", "wavelet", "level", "metadata_cap", "accumulation",
                       "accumulate_averaging", "selection"),
                 everything=("sharing.alphas=[1.0]",))
SHARING.register("local", "jwins.sharing.full:local", keys=(), everything=None)

MODELS.register("small-cnn", "jwins.models:small_cnn")
MODELS.register("lenet", "jwins.models:lenet")
MODELS.register("leaf-cnn", "jwins.models:leaf_cnn")
MODELS.register("celeba-cnn", "jwins.models:celeba_cnn")
MODELS.register("char-lstm", "jwins.models:char_lstm")
MODELS.register("mf", "jwins.models:matrix_factorization", keys=("mf_dim",), aliases=("matrix-factorization",))

DATASETS.register("digits", "jwins.data.digits:DIGITS")
DATASETS.register("mnist", "jwins.data.idx:MNIST")
DATASETS.register("fashion-mnist", "jwins.data.idx:FASHION_MNIST", aliases=("fashionmnist", "fmnist"))
DATASETS.register("cifar10", "jwins.data.cifar:CIFAR10", aliases=("cifar-10",))
DATASETS.register("cifar100", "jwins.data.cifar:CIFAR100", aliases=("cifar-100",))
DATASETS.register("femnist", "jwins.data.leaf:FEMNIST")
DATASETS.register("celeba", "jwins.data.leaf:CELEBA")
DATASETS.register("shakespeare", "jwins.data.shakespeare:SHAKESPEARE")
DATASETS.register("movielens", "jwins.data.movielens:MOVIELENS", aliases=("movie-lens", "ml"))

# Topologies: ``keys`` are the [topology] keys a built-in reads (its factory also gets ``num_nodes`` and ``seed``).
TOPOLOGIES.register("ring", "jwins.topology:ring", keys=())
TOPOLOGIES.register("regular", "jwins.topology:regular", keys=("degree",))
TOPOLOGIES.register("torus", "jwins.topology:torus", keys=())
TOPOLOGIES.register("small-world", "jwins.topology:small_world", keys=("degree", "probability"))
TOPOLOGIES.register("erdos-renyi", "jwins.topology:erdos_renyi", keys=("probability",))
TOPOLOGIES.register("full", "jwins.topology:full", keys=())
TOPOLOGIES.register("file", "jwins.topology:from_edge_list", keys=("path",))

INDEX_CODECS.register("elias-gamma", "jwins.wire.index_codecs:ELIAS_GAMMA")
INDEX_CODECS.register("rice", "jwins.wire.index_codecs:RICE")
INDEX_CODECS.register("bitmap", "jwins.wire.index_codecs:BITMAP")
INDEX_CODECS.register("auto", "jwins.wire.index_codecs:AUTO")
INDEX_CODECS.register("seed", "jwins.wire.index_codecs:SEED", config=False)   # chosen by subsampling itself
INDEX_CODECS.register("dense", "jwins.wire.index_codecs:DENSE", config=False)  # dense messages only
VALUE_CODECS.register("float32", "jwins.wire.value_codecs:FLOAT32")
VALUE_CODECS.register("fpzip", "jwins.wire.fpzip:FPZIP")
VALUE_CODECS.register("float16", "jwins.wire.value_codecs:FLOAT16")
VALUE_CODECS.register("bfloat16", "jwins.wire.value_codecs:BFLOAT16")
VALUE_CODECS.register("pcodec", "jwins.wire.pcodec:PCODEC")


def register_sharing(name: str, factory: Any = None, /, **info: Any):
    """Add a sharing algorithm under ``name`` (the factory returns an object meeting
    :class:`jwins.sharing.Sharing`); usable as a decorator."""
    return SHARING.register(name, factory, **info)


def register_model(name: str, factory: Any = None, /, **info: Any):
    """Add a model factory under ``name`` (called with the dataset's metadata it names and the options)."""
    return MODELS.register(name, factory, **info)


def register_dataset(name: str, spec: Any = None, /, **info: Any):
    """Add a dataset under ``name``: a :class:`jwins.data.DatasetSpec`, or a factory returning a Dataset."""
    return DATASETS.register(name, spec, **info)


def register_topology(name: str, factory: Any = None, /, **info: Any):
    """Add a topology factory under ``name`` (called with ``num_nodes``, ``seed`` and the options; returns a
    networkx graph, a :class:`jwins.topology.Graph` or an edge list)."""
    return TOPOLOGIES.register(name, factory, **info)
