"""The configuration of an experiment: one frozen dataclass per section, read from TOML (or a saved
``config.json``), overridden with ``--set section.key=value``, validated before any work starts.

>>> cfg = load(overrides=["nodes=8", "sharing.algorithm=jwins", "sharing.alphas=[0.1, 1.0]"])
>>> cfg.nodes, cfg.sharing.algorithm, cfg.sharing.alphas
(8, 'jwins', (0.1, 1.0))
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry, rules
from .errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PARTITIONS = ("iid", "shards", "dirichlet", "dirichlet-balanced", "natural")
TRANSFORMS = ("wavelet", "identity")
COMPRESSORS = ("topk", "randomk")
ENGINES = ("local", "distributed")
TRAINING = ("loop", "vmap")


def _choice(section: str, key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{section}{key} = {value!r} is not valid; choose one of: {', '.join(allowed)}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _rule(problem: str | None, setting: str) -> None:
    """A rule of :mod:`jwins.rules` broken by ``setting`` ("key = value"): one ConfigError line."""
    if problem is not None:
        raise ConfigError(f"{setting} {problem}")


def _name(section: Any, key: str, names: registry.Registry) -> None:
    """Check a field that names a part against its registry; store the canonical spelling."""
    object.__setattr__(section, key, names.check(getattr(section, key)))


def _selectable(names: registry.Registry) -> tuple[str, ...]:
    return tuple(n for n in names.names() if names.entry(n).info.get("config", True))


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"          # a registered dataset (jwins data list) or "package.module:attribute"
    root: str = ""                # directory of the dataset files; "" = $JWINS_DATA, then standard places
    partition: str = "shards"     # iid | shards (sort by label, deal k shards) | dirichlet | dirichlet-balanced
                                  # (the reference's: near-equal sizes, >= one sample per class) | natural
    shards_per_node: int = 2      # k of the k-shard partition
    dirichlet_alpha: float = 0.5  # concentration of the Dirichlet partitions (small = more skewed)
    validation: float = 0.0       # fraction of the training set held out before partitioning (stratified by
                                  # class, or by group for natural partitions); no node trains on it
    max_samples: int = 0          # truncate train and test sets (quick runs); 0 = all
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the dataset's loader

    def __post_init__(self) -> None:
        _name(self, "name", registry.DATASETS)
        _choice("data.", "partition", self.partition, PARTITIONS)
        _check(self.shards_per_node >= 1, f"data.shards_per_node = {self.shards_per_node} must be >= 1")
        _check(self.dirichlet_alpha > 0, f"data.dirichlet_alpha = {self.dirichlet_alpha} must be > 0")
        _check(self.max_samples >= 0, f"data.max_samples = {self.max_samples} must be >= 0 (0 = all)")
        _check(0 <= self.validation <= 0.5, f"data.validation = {self.validation} must be in [0, 0.5] (a fraction "
                                            "of the training set; 0 = no validation split)")


@dataclass(frozen=True)
class TopologyConfig:
    kind: str = "regular"         # ring | regular | torus | small-world | erdos-renyi | full | file | "module:attr"
    degree: int = 4               # for regular and small-world
    probability: float = 0.1      # edge probability (erdos-renyi) or rewiring probability (small-world)
    path: str = ""                # edge-list file for kind = "file" (first line N, then "u v" per line)
    resample_every: int = 0       # 0: a static graph; R: a fresh graph of the same family every R rounds
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the topology's factory

    def __post_init__(self) -> None:
        _name(self, "kind", registry.TOPOLOGIES)
        _check(self.resample_every >= 0, f"topology.resample_every = {self.resample_every} must be >= 0 "
                                         "(0 = a static graph)")
        _check(self.degree >= 1, f"topology.degree = {self.degree} must be >= 1")
        _check(0 < self.probability <= 1, f"topology.probability = {self.probability} must be in (0, 1]")
        _check(self.kind != "file" or bool(self.path),
               "topology.kind = 'file' needs topology.path, the edge-list file (first line N, then 'u v' lines)")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "auto"            # "auto" (the dataset's standard model), a registered model or "module:attr"
    same_init: bool = True        # all nodes start from the same seeded model (standard in the field)
    mf_dim: int = 20              # embedding dimension of matrix factorisation (MovieLens)
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the model's factory

    def __post_init__(self) -> None:
        if self.name != "auto":
            _name(self, "name", registry.MODELS)
        _check(self.mf_dim >= 1, f"model.mf_dim = {self.mf_dim} must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    local_steps: int = 3          # SGD steps per round on the node's own data
    batch_size: int = 8
    lr: float = 0.05              # (the reference's CIFAR-10 configs use 0.01; 0.05 gets the offline default
                                  # to ~87% in 100 rounds)
    momentum: float = 0.0
    weight_decay: float = 0.0
    method: str = "loop"          # loop (per-node, fastest on CPU) | vmap (batched over nodes with torch.func)

    def __post_init__(self) -> None:
        _check(self.local_steps >= 0, f"train.local_steps = {self.local_steps} must be >= 0")
        _check(self.batch_size >= 1, f"train.batch_size = {self.batch_size} must be >= 1")
        _check(self.lr > 0, f"train.lr = {self.lr} must be > 0 (for consensus only, set train.local_steps = 0)")
        _check(0 <= self.momentum < 1, f"train.momentum = {self.momentum} must be in [0, 1)")
        _check(self.weight_decay >= 0, f"train.weight_decay = {self.weight_decay} must be >= 0")
        _choice("train.", "method", self.method, TRAINING)


@dataclass(frozen=True)
class SharingConfig:
    algorithm: str = "full"       # full | subsample | topk | choco | jwins | local | "package.module:attribute"
    alpha: float = 0.1            # fraction of coefficients sent (subsample, topk, choco)
    alphas: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 1.0)  # jwins: alpha drawn each round
    transform: str = "wavelet"    # jwins: wavelet | identity (the paper's ablation)
    wavelet: str = "sym2"         # any PyWavelets discrete wavelet
    level: int = 4                # wavelet decomposition level
    metadata_cap: float = 0.5     # alpha >= cap: send the whole model densely
    accumulation: bool = True     # rank by change accumulated since last shared (topk, jwins)
    accumulate_averaging: bool = True  # count the changes made by averaging too (reference default)
    selection: str = "change"     # topk, jwins: rank by accumulated change, or by value (ablation)
    gamma: float = 0.5            # choco: consensus step size
    compressor: str = "topk"      # choco: topk | randomk
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the algorithm's factory

    def __post_init__(self) -> None:
        _name(self, "algorithm", registry.SHARING)
        _rule(rules.fraction(self.alpha), f"sharing.alpha = {self.alpha}")
        _rule(rules.fractions(self.alphas), f"sharing.alphas = {list(self.alphas)}")
        _choice("sharing.", "transform", self.transform, TRANSFORMS)
        _check(self.level >= 0, f"sharing.level = {self.level} must be >= 0")
        _rule(rules.fraction(self.metadata_cap), f"sharing.metadata_cap = {self.metadata_cap}")
        _rule(rules.fraction(self.gamma), f"sharing.gamma = {self.gamma}")
        _choice("sharing.", "compressor", self.compressor, COMPRESSORS)
        _choice("sharing.", "selection", self.selection, ("change", "value"))
        if self.transform == "wavelet":
            import pywt

            _check(self.wavelet in pywt.wavelist(kind="discrete"),
                   f"sharing.wavelet = {self.wavelet!r} is not a discrete PyWavelets wavelet; "
                   f"try sym2, db4, haar, coif1 (pywt.wavelist(kind='discrete') lists all)")


@dataclass(frozen=True)
class WireConfig:
    index_codec: str = "elias-gamma"  # elias-gamma (the paper's) | rice | bitmap | auto (smallest per message)
    value_codec: str = "pcodec"       # pcodec | fpzip | float32 (lossless) | float16 | bfloat16 (lossy); pcodec:
    # the fewest bytes at a speed that keeps a 96-node JWINS round within 1.10x of training (benchmarks/README.md)

    def __post_init__(self) -> None:
        _choice("wire.", "index_codec", self.index_codec, _selectable(registry.INDEX_CODECS))
        _choice("wire.", "value_codec", self.value_codec, _selectable(registry.VALUE_CODECS))


@dataclass(frozen=True)
class EvalConfig:
    every: int = 10               # evaluate every this many rounds (and after the last); 0 = only at the end
    nodes: int = 16               # a fixed random sample of this many nodes (from the seed); 0 = all
    max_samples: int = 2000       # a fixed random sample of this many test samples (from the seed); 0 = all
    final_full: bool = False      # evaluate the last round on every node and every test sample
    batch_size: int = 256         # per forward pass; larger batches were slower on the CPU (benchmarks/README.md)
    validation_every: int = 0     # with data.validation: evaluate the validation split every this many rounds
                                  # (and after the last); 0 = with the test set (eval.every)
    validation_samples: int = 0   # a fixed random sample of the validation split; 0 = eval.max_samples

    def __post_init__(self) -> None:
        _check(self.every >= 0, f"eval.every = {self.every} must be >= 0")
        _check(self.validation_every >= 0, f"eval.validation_every = {self.validation_every} must be >= 0 "
                                           "(0 = with eval.every)")
        _check(self.validation_samples >= 0, f"eval.validation_samples = {self.validation_samples} must be >= 0 "
                                             "(0 = eval.max_samples)")
        _check(self.nodes >= 0, f"eval.nodes = {self.nodes} must be >= 0 (0 = all)")
        _check(self.max_samples >= 0, f"eval.max_samples = {self.max_samples} must be >= 0 (0 = all)")
        _check(self.batch_size >= 1, f"eval.batch_size = {self.batch_size} must be >= 1")


@dataclass(frozen=True)
class EngineConfig:
    kind: str = "local"           # local (all nodes in this process) | distributed (torch.distributed ranks)
    workers: int = 1              # local ranks that `jwins run` starts itself
    timeout: float = 60.0         # seconds before a silent peer is declared gone
    device: str = "cpu"           # where the model math runs: cpu | cuda | cuda:1 ...
    threads: int = 0              # worker threads running nodes side by side, each with one torch intra-op
                                  # thread; 0 = this process's share of the cores
    memory_gb: float = 0.0        # memory this process may use (a run that cannot fit says so at start, with
                                  # the nodes it can fit); 0 = what the machine has available at start

    def __post_init__(self) -> None:
        _choice("engine.", "kind", self.kind, ENGINES)
        _check(self.workers >= 1, f"engine.workers = {self.workers} must be >= 1")
        _check(self.timeout > 0, f"engine.timeout = {self.timeout} must be > 0 seconds")
        _check(self.device == "cpu" or self.device.startswith("cuda"),
               f"engine.device = {self.device!r} is not valid; use cpu, cuda or cuda:N")
        _check(self.threads >= 0, f"engine.threads = {self.threads} must be >= 0")
        _check(self.memory_gb >= 0, f"engine.memory_gb = {self.memory_gb} must be >= 0 (0 = what the machine has)")


@dataclass(frozen=True)
class NetworkConfig:
    bandwidth_mbps: float = 0.0   # per-node uplink bandwidth; 0 = not modelled
    latency_ms: float = 0.0       # per-message latency
    per_link: bool = False        # bandwidth is per link (messages to neighbours in parallel), not per node
    hosts: int = 0                # > 0: the nodes live on this many machines (contiguous blocks, as ranks hold
                                  # them), each with one uplink of bandwidth_mbps carrying every message once per
                                  # other machine it must reach; 0 = every node its own machine

    def __post_init__(self) -> None:
        _check(self.bandwidth_mbps >= 0, f"network.bandwidth_mbps = {self.bandwidth_mbps} must be >= 0")
        _check(self.hosts >= 0, f"network.hosts = {self.hosts} must be >= 0 (0 = one machine per node)")
        _check(self.latency_ms >= 0, f"network.latency_ms = {self.latency_ms} must be >= 0")


@dataclass(frozen=True)
class FaultsConfig:
    message_loss: float = 0.0     # probability that a message on a link is lost
    offline: float = 0.0          # probability that a node is offline for a round (no training, no sending)
    stragglers: float = 0.0       # fraction of nodes that compute slowly (network time model only)
    straggler_slowdown: float = 4.0  # their compute-time multiplier

    def __post_init__(self) -> None:
        _check(0 <= self.stragglers <= 1, f"faults.stragglers = {self.stragglers} must be in [0, 1]")
        _check(self.straggler_slowdown >= 1, f"faults.straggler_slowdown = {self.straggler_slowdown} must be >= 1")
        _check(0 <= self.message_loss <= 1, f"faults.message_loss = {self.message_loss} must be in [0, 1]")
        _check(0 <= self.offline < 1, f"faults.offline = {self.offline} must be in [0, 1)")


@dataclass(frozen=True)
class LogConfig:
    tensorboard: bool = False     # also write the per-round metrics as TensorBoard events (pip install jwins[tensorboard])


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 0                # write a checkpoint every this many rounds; 0 = never

    def __post_init__(self) -> None:
        _check(self.every >= 0, f"checkpoint.every = {self.every} must be >= 0")


@dataclass(frozen=True)
class Config:
    seed: int = 0
    nodes: int = 16
    rounds: int = 100
    # folders searched for "module:attribute" parts: the config file's own is added when it is read (where the
    # run happens, not what it computes: not compared)
    import_paths: tuple[str, ...] = field(default=(), compare=False)
    data: DataConfig = field(default_factory=DataConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sharing: SharingConfig = field(default_factory=SharingConfig)
    wire: WireConfig = field(default_factory=WireConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        _check(self.nodes >= 1, f"nodes = {self.nodes} must be >= 1")
        _check(self.rounds >= 1, f"rounds = {self.rounds} must be >= 1")
        _check(0 <= self.seed < 2**63, f"seed = {self.seed} must be in [0, 2**63)")
        topo = self.topology
        if self.nodes > 1 and topo.kind in ("regular", "small-world"):
            _check(topo.degree < self.nodes,
                   f"topology.degree = {topo.degree} must be < nodes = {self.nodes}; lower the degree or add nodes")
        if topo.kind == "regular" and self.nodes > 1:
            problem = rules.regular_graph(self.nodes, topo.degree)
            _check(problem is None, f"topology.degree = {topo.degree} {problem}; change the degree or the nodes")
        if self.sharing.algorithm != "local":
            _check(self.nodes >= 2 or topo.kind == "full",
                   f"nodes = {self.nodes}: sharing needs at least 2 nodes (or use sharing.algorithm = 'local')")


    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


# The settings that decide where and how a run executes, never a number it computes: a resumed run may change
# them, ranks may differ in them, and a directory prepared for a run matches it whatever they are.
# (engine.device may change the last bits of float arithmetic on an accelerator; everything else is exact:
# tests/test_config.py runs each of them changed and compares the metrics.)
NO_NUMBERS = ("engine", "checkpoint", "import_paths", "log")


def numbers(tree: dict[str, Any]) -> dict[str, Any]:
    """A resolved config (``to_dict``) without :data:`NO_NUMBERS`: what decides a run's numbers."""
    return {k: v for k, v in tree.items() if k not in NO_NUMBERS}


def ignored(config: Config) -> list[str]:
    """One line per setting given a non-default value that the chosen parts do not read (e.g.
    ``sharing.alphas`` with ``full``): a registered part reads the section keys its registration lists; a
    ``module:attribute`` part reads only its ``options``."""
    lines = []
    for section, field_name, names in (("sharing", "algorithm", registry.SHARING),
                                       ("topology", "kind", registry.TOPOLOGIES), ("model", "name", registry.MODELS)):
        values = getattr(config, section)
        name = getattr(values, field_name)
        if section == "model" and name == "auto":
            continue  # the dataset decides the model; its keys are not known before it loads
        canonical = names.canonical(name)
        reads = set(names.entry(canonical).info.get("keys", ())) if canonical else set()
        default = type(values)()
        for f in dataclasses.fields(values):
            if f.name in (field_name, "options", "same_init") or f.name in reads:
                continue
            if getattr(values, f.name) != getattr(default, f.name):
                lines.append(f"{section}.{f.name} = {getattr(values, f.name)!r} is ignored: {section}.{field_name} "
                             f"= {name!r} does not use it")
    return lines


class _Raw(str):
    """A value typed on the command line: parsed with TOML's grammar against the field's type."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Convert a TOML/JSON value (or a string from --set) to the field's type, or raise ConfigError."""
    origin = typing.get_origin(kind)
    if isinstance(value, _Raw):
        parsed = _parse_literal(value)
        value = parsed if not (kind is str and not isinstance(parsed, str)) else str(value)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} = {value!r} must be a list, e.g. {key}=[0.1,0.2]")
        return tuple(_coerce(v, item, key) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} is a table of options; set its keys, e.g. {key}.<name>=...")
        return {str(k): _option(v, f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise AssertionError("union config fields are not supported")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} = {value!r} must be true or false")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} = {value!r} must be an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} = {value!r} must be a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r} must be a string")
        return value
    raise AssertionError(f"unsupported config type {kind}")


def _option(value: Any, key: str) -> Any:
    """A value of an ``options`` table: any TOML value (a string typed on the command line is parsed)."""
    if isinstance(value, _Raw):
        value = _parse_literal(value)
    if isinstance(value, dict):
        return {str(k): _option(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_option(v, key) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(f"{key} = {value!r}: options hold numbers, strings, booleans, lists and tables only")


def _parse_literal(text: str) -> Any:
    """Parse one value written on the command line with TOML's grammar (never eval)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word; the type check that follows says what was expected


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    types_ = _field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]}; valid keys in "
                          f"{prefix.rstrip('.') or 'the top level'}: {', '.join(types_)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        kind = types_[name]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name} is a section; set its keys, e.g. {prefix}{name}.<key>=...")
            kwargs[name] = _build(kind, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, kind, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # pragma: no cover - defensive
        raise ConfigError(f"invalid {prefix.rstrip('.') or 'config'}: {e}") from None


def to_dict(config: Config) -> dict[str, Any]:
    """The resolved configuration as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(values: dict[str, Any]) -> Config:
    values = dict(values)
    values.pop("out", None)  # run directories written before the config stopped naming its own output
    return _build(Config, values, "")


def _set(tree: dict[str, Any], dotted: str, value: str) -> None:
    parts = dotted.strip().split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}: {part} is not a section")
    node[parts[-1]] = value


def override(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """``config`` with ``section.key=value`` overrides applied (validated like the command line's)."""
    tree = to_dict(config)
    _apply(tree, overrides)
    return from_dict(tree)


def quote(value: str) -> str:
    """``value`` as a TOML string, for an override ``key=value`` that must stay a string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _apply(tree: dict[str, Any], overrides) -> None:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} must look like section.key=value, e.g. topology.degree=6")
        key, value = item.split("=", 1)
        _set(tree, key, _Raw(value.strip()))


def read_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config or a run directory's config.json (or a run directory itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot parse config file {path}: {e}") from None


def load(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
         **values: Any) -> Config:
    """Build a validated Config from a file, then ``key=value`` overrides, then keyword values.

    Overrides use dotted names (``topology.degree=6``); values are parsed with TOML's grammar, so lists are
    ``[0.1,0.2]`` and strings may be bare words.
    """
    tree: dict[str, Any] = read_file(path) if path else {}
    if path:  # "module:attribute" parts may live beside the config file
        folder = Path(path).resolve()
        folder = str(folder if folder.is_dir() else folder.parent)
        paths = list(tree.get("import_paths", []) or [])
        tree["import_paths"] = paths + ([folder] if folder not in paths else [])
    _apply(tree, overrides)
    for key, value in values.items():
        if value is not None:
            _set(tree, key, value)
    return from_dict(tree)
