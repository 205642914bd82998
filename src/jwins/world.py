"""Everything an experiment is built from: the parts a config names (or that ``jwins.run`` is given as objects),
built and checked before any training starts.

Each part is resolved through its registry (:mod:`jwins.registry`): a registered name or ``"module:attribute"``,
called with what the loop offers and the section's ``options``:

* sharing: the built-in's own ``[sharing]`` keys, and ``rounding`` (the wire value codec's round trip) to a
  factory that takes it; the result must meet :class:`jwins.sharing.Sharing`;
* topology: ``num_nodes`` (also as ``n``) and ``seed`` (and the built-in's ``[topology]`` keys); the result is a
  networkx graph, a :class:`jwins.topology.Graph` or a list of edges, and must be connected;
* dataset: ``root`` and ``max_samples``; a :class:`jwins.data.DatasetSpec` or a factory returning a
  :class:`jwins.data.Dataset`;
* model: the dataset's metadata it names (``num_classes``, ``input_shape``, ``Dataset.meta`` entries); the
  result is an ``nn.Module`` whose state is all in parameters.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch
from torch import nn

from . import parallel, rng, topology, wire
from .config import Config
from .data import Dataset, partition as partition_data
from .data.partition import holdout
from .errors import ConfigError, DataError, JwinsError
from .flat import FlatModel, init_params
from .registry import DATASETS, MODELS, PYTHON_OBJECT, SHARING, call, import_name
from .sharing.base import Mixing, Sharing

_PROTOCOL = ("init", "message_dim", "prepare", "merge")


@dataclass(frozen=True)
class SharingTraits:
    """What the loop reads of a sharing algorithm besides its four methods."""

    index_codec: str | None   # a wire index codec it requires (``seed`` for subsampling), else the config's
    reliable_links: bool      # its state breaks for good if a message is lost
    regraph: Callable[[Any, Mixing], Any] | None  # told when the graph changes (state -> state), if it must be


def build_sharing(config: Config, sharing: Any = None) -> tuple[Sharing, SharingTraits]:
    """The sharing algorithm: ``sharing`` (an object or a factory) or the one ``sharing.algorithm`` names."""
    key = "sharing.algorithm"
    s = config.sharing
    if sharing is not None and _meets(sharing):
        obj = sharing
        codec = config.wire.value_codec
        if wire.roundtrip(codec) is not None and hasattr(obj, "rounding") and getattr(obj, "rounding") is None:
            raise ConfigError(f"wire.value_codec = {codec!r} rounds the values sent, but the sharing object given "
                              "to jwins.run was built without rounding= (its copies of what neighbours decode would "
                              "drift apart); pass its factory instead (it is then given the codec's rounding), or "
                              f"build it with rounding=jwins.wire.roundtrip({codec!r})")
    else:
        factory = sharing if sharing is not None else SHARING.load(s.algorithm, config.import_paths)
        keys = _entry_info(SHARING, s.algorithm).get("keys", ()) if sharing is None else ()
        offered = {k: getattr(s, k) for k in keys}
        offered["rounding"] = wire.roundtrip(config.wire.value_codec)
        obj = call(factory, key=key, options=s.options, offered=offered)
    if not _meets(obj):
        missing = [m for m in _PROTOCOL if not callable(getattr(obj, m, None))]
        raise ConfigError(f"{key}: {type(obj).__name__} is not a sharing algorithm: it has no "
                          f"{', '.join(missing)} (see the Sharing protocol in docs/extending.md)")
    traits = SharingTraits(getattr(obj, "index_codec", None), bool(getattr(obj, "reliable_links", False)),
                           getattr(obj, "regraph", None))
    if traits.reliable_links:
        for name, value in (("message_loss", config.faults.message_loss), ("offline", config.faults.offline)):
            if value:
                raise ConfigError(f"faults.{name} = {value:g} cannot be used with sharing.algorithm = "
                                  f"{s.algorithm!r}: it keeps exact state only if every message arrives; set "
                                  "it to 0 or choose another algorithm")
    return obj, traits


def _meets(obj: Any) -> bool:
    return all(callable(getattr(obj, m, None)) for m in _PROTOCOL) and not isinstance(obj, type)


def _entry_info(names, value: str) -> dict:
    canonical = names.canonical(value)
    return dict(names.entry(canonical).info) if canonical else {}


def build_graph(config: Config, graph: Any = None) -> topology.Graph:
    """The communication graph: ``graph`` (a graph, an edge list or a factory) or ``topology.kind``'s."""
    t = config.topology
    if graph is None:
        return topology.build(t.kind, config.nodes, seed=config.seed, options=t.options, search=config.import_paths,
                              degree=t.degree, probability=t.probability, path=t.path)
    if callable(graph) and not isinstance(graph, (nx.Graph, topology.Graph)):
        graph = call(graph, key="topology.kind", options=t.options,
                     offered={"num_nodes": config.nodes, "n": config.nodes, "seed": config.seed})
    g = topology.as_graph(graph, config.nodes)
    topology.check_connected(g)
    return g


def resampled_graph(config: Config, base: topology.Graph, epoch: int) -> topology.Graph:
    """The graph of resampling epoch ``epoch`` >= 1 (``topology.resample_every``): a fresh draw of the same
    family from a seed derived from (seed, epoch); a family that draws nothing at random (ring, torus, full, a
    file, a given graph) gets its nodes relabelled by a random permutation instead. Connected, like every graph."""
    t = config.topology
    seed = int(rng.stream(config.seed, "topology-resample", epoch).integers(0, 2**31))
    graph = base
    if config.topology.kind and not config.topology.kind.startswith(PYTHON_OBJECT):
        graph = topology.build(t.kind, config.nodes, seed=seed, options=t.options, search=config.import_paths,
                               degree=t.degree, probability=t.probability, path=t.path)
    if graph == base:
        perm = rng.stream(config.seed, "topology-relabel", epoch).permutation(config.nodes)
        graph = topology.Graph.from_edges(config.nodes, [(int(perm[u]), int(perm[v])) for u, v in base.edges()])
    return graph


def load_dataset(config: Config, dataset: Any = None) -> tuple[Dataset, str | None]:
    """The dataset and its default model: ``dataset`` (a Dataset, a spec or a factory) or ``data.name``'s."""
    key = "data.name"
    d = config.data
    if isinstance(dataset, Dataset):
        return dataset, None
    if d.root and not Path(d.root).expanduser().exists():
        raise DataError(f"data.root = {d.root!r} does not exist; correct the path, or set data.root = \"\" to "
                        "search $JWINS_DATA and the standard places")
    source = dataset if dataset is not None else DATASETS.load(d.name, config.import_paths)
    default_model = getattr(source, "default_model", None)
    load = getattr(source, "load", source)  # a DatasetSpec, or a factory
    result = call(load, key=key, options=d.options, offered={"root": d.root, "max_samples": d.max_samples})
    if isinstance(result, dict):
        result = Dataset.from_arrays(name=d.name, **result)
    if not isinstance(result, Dataset):
        raise ConfigError(f"{key}: the dataset factory returned a {type(result).__name__}, not a "
                          "jwins.data.Dataset (build one with Dataset.from_arrays)")
    return result, default_model or result.meta.get("default_model")


def model_factory(config: Config, dataset: Dataset, default_model: str | None,
                  model: Any = None) -> Callable[[], nn.Module]:
    """A zero-argument factory of the model (called under a seeded generator by :func:`init_params`)."""
    key = "model.name"
    m = config.model
    if isinstance(model, nn.Module):
        if not m.same_init:
            raise ConfigError("model.same_init = false needs a model factory, not a built module (every node "
                              "would start from the module's own parameters)")
        return lambda: copy.deepcopy(model)
    if model is None:
        name = m.name
        if name == "auto":
            if not default_model:
                raise ConfigError(f"model.name = 'auto' but dataset {config.data.name!r} names no default model; "
                                  f"set model.name to one of {', '.join(MODELS.names())} or 'module:attribute'")
            name = default_model
        factory = MODELS.load(name, config.import_paths)
        keys = _entry_info(MODELS, name).get("keys", ())
    else:
        factory, keys = model, ()
    offered = {**dataset.meta, "num_classes": dataset.num_classes, "input_shape": tuple(dataset.input_shape),
               **{k: getattr(m, k) for k in keys}}

    def build() -> nn.Module:
        module = call(factory, key=key, options=m.options, offered=offered)
        if not isinstance(module, nn.Module):
            raise ConfigError(f"{key}: the model factory returned a {type(module).__name__}, not a torch nn.Module")
        return module

    return build


def record_objects(config: Config, **objects: Any) -> Config:
    """``config`` with the names of parts given to ``jwins.run`` as objects: their import path where they have
    one (so that the saved config.json runs again), else ``python:<name>``."""
    fields = {"sharing": ("sharing", "algorithm"), "model": ("model", "name"), "dataset": ("data", "name"),
              "graph": ("topology", "kind")}
    for arg, obj in objects.items():
        if obj is not None:
            section, field = fields[arg]
            name = import_name(obj) or f"{PYTHON_OBJECT}{getattr(obj, '__qualname__', type(obj).__name__)}"
            config = config.replace(**{section: dataclasses.replace(getattr(config, section), **{field: name})})
    return config


@dataclass(frozen=True, eq=False)
class World:
    """Everything built from a config that does not change during a run (``graph`` is the first epoch's: with
    ``topology.resample_every`` the loop holds the current one)."""

    config: Config
    dataset: Dataset
    parts: list[np.ndarray]
    graph: topology.Graph
    mixing: Mixing
    flat: FlatModel
    nodes: list[int]
    eval_nodes: np.ndarray  # global ids evaluated
    test_x: torch.Tensor
    test_y: torch.Tensor
    sharing: Sharing
    traits: SharingTraits
    validation: torch.Tensor  # indices of the training samples held out for validation (none: empty)
    val_x: torch.Tensor       # the sampled validation set evaluated each time (eval.validation_samples)
    val_y: torch.Tensor


def device_of(config: Config) -> torch.device:
    device = torch.device(config.engine.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise JwinsError(f"engine.device = {config.engine.device!r} but no CUDA device is available; "
                         "use engine.device = 'cpu'")
    return device


def build_world(config: Config, nodes: list[int], *, sharing: Any = None, model: Any = None, dataset: Any = None,
                graph: Any = None) -> tuple[World, torch.Tensor]:
    """Build every part (the cheap ones first, so a bad plugin fails before data is loaded), then partition
    the data and make the initial [N, D] parameters of the hosted ``nodes``."""
    sharing_obj, traits = build_sharing(config, sharing)
    g = build_graph(config, graph)
    device = device_of(config)
    data, default_model = load_dataset(config, dataset)
    if config.nodes > data.num_train:
        raise JwinsError(f"nodes = {config.nodes} > {data.num_train} training samples of {config.data.name}; "
                         "use fewer nodes or more data")
    kept, held = validation_split(config, data)
    if config.nodes > len(kept):
        raise JwinsError(f"nodes = {config.nodes} > {len(kept)} training samples left after the validation split "
                         f"(data.validation = {config.data.validation:g}); use fewer nodes or a smaller split")
    parts = partition_data(config.data.partition, data, config.nodes, rng.stream(config.seed, "partition"),
                           shards_per_node=config.data.shards_per_node, dirichlet_alpha=config.data.dirichlet_alpha,
                           among=kept if len(held) else None)
    factory = model_factory(config, data, default_model, model)
    check_memory(config, len(nodes), factory, sharing_obj, data)
    try:
        flat, params = init_params(factory, nodes, seed=config.seed, same_init=config.model.same_init, device=device)
    except ConfigError:
        raise
    except ValueError as e:  # e.g. a module with buffers
        raise ConfigError(f"model.name: {e}") from None
    eval_nodes, samples = evaluation_sample(config, data.num_test)
    test_x, test_y = data.test_x[samples].to(device), data.test_y[samples].to(device)
    held = torch.from_numpy(held)
    val_sample = held[_sample(len(held), config.eval.validation_samples or config.eval.max_samples,
                              rng.stream(config.seed, "eval-validation-samples"))]
    world = World(config, data, [parts[i] for i in nodes], g, Mixing(topology.metropolis_hastings(g, sparse=True), tuple(nodes)),
                  flat, nodes, eval_nodes, test_x, test_y, sharing_obj, traits, held,
                  data.train_x[val_sample].to(device), data.train_y[val_sample].to(device))
    return world, params


BASELINE_BYTES = 400 << 20  # the interpreter, torch and the libraries, before any data (measured: 250-300 MB)


def available_memory() -> int:
    """Bytes the machine can give this process now: MemAvailable (Linux), else the free pages; shared by the
    ranks of one machine (``LOCAL_WORLD_SIZE``)."""
    total = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    total = int(line.split()[1]) * 1024
    except OSError:
        pass
    if not total:
        try:
            total = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 0
    try:
        ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        ranks = 1
    return total // ranks


def memory_budget(config: Config) -> int:
    """``engine.memory_gb`` in bytes, or what the machine has available (0 when it cannot be told)."""
    return int(config.engine.memory_gb * 2**30) if config.engine.memory_gb else available_memory()


def block_bytes(config: Config) -> int:
    """The temporaries one block of rows may hold: 1% of the memory budget per worker thread, within 8 MB and
    256 MB (a block over glibc's kept-block limit would page-fault afresh every round)."""
    budget = memory_budget(config) or 8 << 30
    return int(min(256 << 20, max(8 << 20, budget // 100 // max(1, parallel.budget()))))


def spare_bytes(config: Config) -> int:
    """What a round may keep from one phase to the next beyond its blocks: a tenth of the memory budget."""
    return (memory_budget(config) or 8 << 30) // 10


def bytes_per_node(config: Config, dim: int, sharing: Any) -> int:
    """What one hosted node costs a run, beyond the data: its parameters (and momentum), the sharing state of
    one node (measured: ``sharing.init`` on one row), and its share of a round's messages (the values it sends,
    their bytes on the wire, and, decoded, its values and indices: about 20 bytes per coefficient sent)."""
    row = torch.zeros(1, dim)
    state = sharing.init(row, [0])
    fields = {} if state is None else state._asdict()
    state_bytes = sum(v.element_size() * v.numel() for v in fields.values() if isinstance(v, torch.Tensor))
    sent = sharing.message_dim(dim) * float(getattr(sharing, "expected_fraction", 1.0))
    return 4 * dim * (1 + (config.train.momentum > 0)) + state_bytes + int(20 * sent)


def check_memory(config: Config, hosted: int, factory: Callable[[], nn.Module], sharing: Any, data: Dataset
                 ) -> None:
    """Refuse, at start and in one line, a run that would not fit in the memory budget, naming how many nodes
    would. The data is held once; what a round needs beyond the nodes' own rows is bounded by blocks."""
    budget = memory_budget(config)
    if not budget:
        return
    with torch.random.fork_rng(devices=[]):
        dim = sum(p.numel() for p in factory().parameters())
    per_node = bytes_per_node(config, dim, sharing)
    data_bytes = sum(t.element_size() * t.numel() for t in (data.train_x, data.train_y, data.test_x, data.test_y))
    fixed = BASELINE_BYTES + data_bytes + 4 * block_bytes(config) * parallel.budget()
    need = fixed + hosted * per_node
    if need > budget:
        fits = max(0, (budget - fixed) // per_node)
        where = f"engine.memory_gb = {config.engine.memory_gb:g}" if config.engine.memory_gb else \
            "the memory this machine has available"
        raise JwinsError(f"{hosted} nodes need about {need / 2**30:.1f} GB ({per_node / 2**20:.1f} MB per node and "
                         f"{fixed / 2**30:.1f} GB for the data and the rest), more than {where} "
                         f"({budget / 2**30:.1f} GB): about {fits} nodes fit; use fewer nodes, or more ranks or "
                         "machines (engine.workers, torchrun)")


def validation_split(config: Config, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) indices of the training set: ``data.validation`` of it held out before partitioning,
    drawn from the seed, stratified by class (classification) or by natural group (``natural`` partitions,
    so every group keeps its share). No node ever trains on the held-out samples."""
    n = data.num_train
    if not config.data.validation:
        return np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if config.data.partition == "natural" and data.train_groups is not None:
        strata = data.train_groups
    elif data.task == "classification":
        strata = data.train_y.numpy()
    else:
        strata = data.train_groups
    return holdout(strata, n, config.data.validation, rng.stream(config.seed, "validation"))


def evaluation_sample(config: Config, num_test: int) -> tuple[np.ndarray, torch.Tensor]:
    """The nodes evaluated and the test samples they are evaluated on: fixed random samples drawn from the seed
    (``eval.nodes``, ``eval.max_samples``; 0 = all), the same for every algorithm run with that seed."""
    n = config.eval.nodes
    nodes = np.arange(config.nodes) if not n or n >= config.nodes else \
        np.sort(rng.stream(config.seed, "eval").choice(config.nodes, n, replace=False))
    return nodes, torch.from_numpy(_sample(num_test, config.eval.max_samples, rng.stream(config.seed, "eval-samples")))


def _sample(count: int, k: int, stream: np.random.Generator) -> np.ndarray:
    """``k`` of ``count`` items drawn at random, sorted (all of them for k = 0 or k >= count)."""
    return np.arange(count) if not k or k >= count else np.sort(stream.choice(count, k, replace=False))
