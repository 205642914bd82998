"""Communication graphs between nodes, and their mixing (gossip) weights.

Every graph is undirected and simple, with nodes numbered ``0 .. num_nodes - 1``. Random graphs take an integer
``seed`` and never touch a global random generator: when a draw is rejected (e.g. disconnected), it is re-drawn
with a seed derived from ``(seed, attempt)``, so the same arguments always give the same graph.

Degenerate sizes: a graph of 1 node (no edges) is allowed everywhere it makes sense and counts as connected;
``ring(2)`` is the single edge ``0 - 1`` (degree 1), ``ring(1)`` the single node.
"""
from __future__ import annotations

import math
import operator
import os
from dataclasses import dataclass
from collections.abc import Iterable
from typing import Any

import networkx as nx
import numpy as np

from jwins import rules
from jwins.errors import TopologyError
from jwins.rng import stream

__all__ = [
    "Graph",
    "ring",
    "regular",
    "torus",
    "small_world",
    "erdos_renyi",
    "full",
    "from_edge_list",
    "write_edge_list",
    "as_graph",
    "build",
    "check_connected",
    "metropolis_hastings",
    "spectral_gap",
]

#: How many times a random graph is re-drawn (with derived seeds) before giving up.
MAX_TRIES = 100


# ----------------------------------------------------------------------------------------------------- Graph


@dataclass(frozen=True)
class Graph:
    """An undirected simple graph on nodes ``0 .. num_nodes - 1``.

    ``neighbors[i]`` is the sorted tuple of the neighbours of node ``i``; the relation is symmetric and has no
    self loops (checked on construction). Two graphs are equal when they have the same edges.
    """

    num_nodes: int
    neighbors: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        n = self.num_nodes
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise TopologyError(f"num_nodes must be a positive integer, got {n!r}")
        if len(self.neighbors) != n:
            raise TopologyError(
                f"neighbors has {len(self.neighbors)} entries but num_nodes is {n}; give one tuple per node"
            )
        lengths = np.fromiter((len(nb) for nb in self.neighbors), dtype=np.int64, count=n)
        src = np.repeat(np.arange(n, dtype=np.int64), lengths)
        dst = np.fromiter((j for nb in self.neighbors for j in nb), dtype=np.int64, count=int(lengths.sum()))
        if dst.size == 0:
            return
        bad = (dst < 0) | (dst >= n)
        if bad.any():
            k = int(np.argmax(bad))
            raise TopologyError(f"node {src[k]} has neighbour {dst[k]}, outside 0..{n - 1}")
        loop = dst == src
        if loop.any():
            raise TopologyError(f"node {src[int(np.argmax(loop))]} has a self loop; self loops are not allowed")
        same_row = src[1:] == src[:-1]
        unsorted = same_row & (dst[1:] <= dst[:-1])
        if unsorted.any():
            i = int(src[1:][int(np.argmax(unsorted))])
            raise TopologyError(f"neighbors[{i}] = {self.neighbors[i]} is not strictly increasing (sorted, no repeats)")
        # symmetric <=> the sorted list of (dst, src) pairs equals the list of (src, dst) pairs (already sorted)
        order = np.lexsort((src, dst))
        rev_src, rev_dst = dst[order], src[order]
        mismatch = (rev_src != src) | (rev_dst != dst)
        if mismatch.any():
            k = int(np.argmax(mismatch))
            i, j = int(src[k]), int(dst[k])
            if i in self.neighbors[j]:  # the first differing pair may be the other half
                i, j = int(rev_src[k]), int(rev_dst[k])
            raise TopologyError(f"edge {i} -> {j} has no reverse {j} -> {i}; the graph must be undirected")

    # -- construction
    @classmethod
    def from_edges(cls, num_nodes: int, edges) -> "Graph":
        """Build from an iterable of ``(u, v)`` pairs (either order, duplicates merged, no self loops)."""
        adj: list[set[int]] = [set() for _ in range(num_nodes)]
        for u, v in edges:
            u, v = int(u), int(v)
            if u == v:
                raise TopologyError(f"self loop on node {u}; self loops are not allowed")
            if not (0 <= u < num_nodes and 0 <= v < num_nodes):
                raise TopologyError(f"edge ({u}, {v}) has a node outside 0..{num_nodes - 1}")
            adj[u].add(v)
            adj[v].add(u)
        return cls(int(num_nodes), tuple(tuple(sorted(s)) for s in adj))

    @classmethod
    def from_networkx(cls, g: nx.Graph) -> "Graph":
        """Convert an undirected networkx graph whose nodes are exactly ``0 .. n-1``."""
        if g.is_directed():
            raise TopologyError("directed graphs are not supported; pass g.to_undirected()")
        n = g.number_of_nodes()
        if set(g.nodes) != set(range(n)):
            raise TopologyError(
                f"networkx graph nodes must be the integers 0..{n - 1}; "
                "relabel with networkx.convert_node_labels_to_integers(g)"
            )
        if nx.number_of_selfloops(g):
            u = next(iter(nx.nodes_with_selfloops(g)))
            raise TopologyError(
                f"self loop on node {u}; self loops are not allowed "
                "(remove them with g.remove_edges_from(nx.selfloop_edges(g)))"
            )
        return cls(n, tuple(tuple(sorted(int(j) for j in g.adj[i])) for i in range(n)))

    def to_networkx(self) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(range(self.num_nodes))
        g.add_edges_from(self.edges())
        return g

    # -- queries
    def degree(self, node: int) -> int:
        return len(self.neighbors[node])

    @property
    def degrees(self) -> np.ndarray:
        """Degree of every node, int64 array of shape ``[num_nodes]``."""
        return np.fromiter((len(nb) for nb in self.neighbors), dtype=np.int64, count=self.num_nodes)

    @property
    def num_edges(self) -> int:
        return int(self.degrees.sum()) // 2

    def edges(self) -> list[tuple[int, int]]:
        """Every edge once, as ``(u, v)`` with ``u < v``, sorted."""
        return [(u, v) for u, nbrs in enumerate(self.neighbors) for v in nbrs if u < v]

    def __repr__(self) -> str:
        return f"Graph(num_nodes={self.num_nodes}, num_edges={self.num_edges})"


# ----------------------------------------------------------------------------------------------------- helpers


def _check_nodes(num_nodes: Any, minimum: int = 1, what: str = "graph") -> int:
    try:
        n = operator.index(num_nodes)
    except TypeError:
        raise TopologyError(f"num_nodes must be an integer, got {num_nodes!r}") from None
    if n < minimum:
        raise TopologyError(f"a {what} needs at least {minimum} nodes, got {n}")
    return n


def _check_degree(degree: Any) -> int:
    if isinstance(degree, bool):
        raise TopologyError(f"degree must be an integer, got {degree!r}")
    try:
        return operator.index(degree)
    except TypeError:
        raise TopologyError(f"degree must be an integer, got {degree!r}") from None


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool):
        raise TopologyError(f"seed must be an integer, got {seed!r}")
    try:
        s = operator.index(seed)
    except TypeError:
        raise TopologyError(f"seed must be an integer, got {seed!r}") from None
    if s < 0:
        raise TopologyError(f"seed must be >= 0, got {s}")
    return s


def _check_probability(p: Any) -> float:
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise TopologyError(f"probability must be a number in [0, 1], got {p!r}") from None
    if not 0.0 <= p <= 1.0:
        raise TopologyError(f"probability must be in [0, 1], got {p}")
    return p


def _derived_seed(seed: int, *key: int) -> int:
    """A 32-bit seed for networkx, a stateless function of ``(seed, *key)``."""
    return int(stream(seed, "topology", *key).integers(0, 2**32))


def _attempt_seeds(seed: int):
    """``seed`` itself, then seeds derived from ``(seed, attempt)``; MAX_TRIES in all."""
    yield seed
    for attempt in range(1, MAX_TRIES):
        yield _derived_seed(seed, attempt)


def _components(graph: Graph) -> list[int]:
    """Sizes of the connected components, largest first (networkx)."""
    g = nx.Graph()
    g.add_nodes_from(range(graph.num_nodes))
    g.add_edges_from(graph.edges())
    return sorted((len(c) for c in nx.connected_components(g)), reverse=True)


def is_connected(graph: Graph) -> bool:
    return len(_components(graph)) == 1


def check_connected(graph: Graph) -> None:
    """Raise :class:`TopologyError` if ``graph`` is not connected (decentralized learning would not converge)."""
    sizes = _components(graph)
    if len(sizes) == 1:
        return
    shown = ", ".join(str(s) for s in sizes[:10]) + (", ..." if len(sizes) > 10 else "")
    raise TopologyError(
        f"graph is disconnected: {len(sizes)} components (sizes {shown}); nodes in different components never "
        "exchange models. Use a denser topology (larger degree or probability), or add edges joining the components"
    )


# ----------------------------------------------------------------------------------------------------- generators


def ring(num_nodes: int) -> Graph:
    """Cycle ``0 - 1 - ... - (n-1) - 0``; every node has degree 2 (n = 2: one edge; n = 1: one node)."""
    n = _check_nodes(num_nodes, 1, "ring")
    if n <= 2:
        return full(n)
    return Graph.from_networkx(nx.cycle_graph(n))


def full(num_nodes: int) -> Graph:
    """Complete graph: every node is a neighbour of every other."""
    n = _check_nodes(num_nodes, 1, "full graph")
    everyone = tuple(range(n))
    return Graph(n, tuple(everyone[:i] + everyone[i + 1 :] for i in range(n)))  # = nx.complete_graph(n), faster


def regular(num_nodes: int, degree: int, *, seed: int) -> Graph:
    """A connected random ``degree``-regular graph (``networkx.random_regular_graph``).

    Re-drawn with derived seeds until connected, at most :data:`MAX_TRIES` times.
    """
    n = _check_nodes(num_nodes, 2, "regular graph")
    d = _check_degree(degree)
    seed = _check_seed(seed)
    problem = rules.regular_graph(n, d)
    if problem:
        raise TopologyError(f"regular graph on {n} nodes: degree {d} {problem}; use another degree (<= {n - 1}; "
                            f"{n - 1} is the full graph), or another number of nodes")
    for s in _attempt_seeds(seed):
        g = Graph.from_networkx(nx.random_regular_graph(d, n, seed=s))
        if is_connected(g):
            return g
    raise TopologyError(  # practically unreachable for d >= 3; d = 2 on many nodes is rarely a single cycle
        f"could not draw a connected {d}-regular graph on {n} nodes in {MAX_TRIES} tries (seed {seed}); "
        "use a larger degree (3 or more), or the 'ring' topology for degree 2"
    )


def _torus_shape(n: int) -> tuple[int, int]:
    rows = max(r for r in range(1, math.isqrt(n) + 1) if n % r == 0)
    return rows, n // rows


def _valid_torus_sizes_near(n: int) -> tuple[int | None, int]:
    def ok(m: int) -> bool:
        r, _ = _torus_shape(m)
        return r >= 3

    below = next((m for m in range(n - 1, 8, -1) if ok(m)), None)
    above = next(m for m in range(max(n + 1, 9), 4 * n + 10) if ok(m))
    return below, above


def torus(num_nodes: int) -> Graph:
    """2-D torus (wrap-around grid) of ``rows x cols`` nodes; every node has degree 4.

    ``rows`` is the largest divisor of ``num_nodes`` that is at most ``sqrt(num_nodes)``; both sides must be >= 3.
    Node ``r * cols + c`` sits at row ``r``, column ``c`` (row-major).
    """
    n = _check_nodes(num_nodes, 1, "torus")
    rows, cols = _torus_shape(n)
    if rows < 3:
        below, above = _valid_torus_sizes_near(n)
        hint = f"{below} or {above}" if below else f"{above}"
        raise TopologyError(
            f"cannot lay {n} nodes on a torus: the most square shape is {rows} x {cols}, and both sides must be "
            f">= 3; use a node count like {hint} (e.g. 9 = 3x3, 16 = 4x4, 64 = 8x8)"
        )
    g = nx.grid_2d_graph(rows, cols, periodic=True)
    return Graph.from_edges(n, ((r1 * cols + c1, r2 * cols + c2) for (r1, c1), (r2, c2) in g.edges()))


def small_world(num_nodes: int, degree: int, *, probability: float, seed: int) -> Graph:
    """A connected Watts-Strogatz small-world graph: a ring where each node joins its ``degree`` nearest
    neighbours (``degree`` even), each edge then rewired with ``probability``.

    Re-drawn with derived seeds until connected, at most :data:`MAX_TRIES` times.
    """
    n = _check_nodes(num_nodes, 3, "small-world graph")
    k = _check_degree(degree)
    p = _check_probability(probability)
    seed = _check_seed(seed)
    if k < 2 or k % 2 or k >= n:
        raise TopologyError(
            f"small-world degree must be even, >= 2 and < the number of nodes ({n}), got {k}; "
            f"each node joins degree/2 ring neighbours on each side"
        )
    for s in _attempt_seeds(seed):
        g = Graph.from_networkx(nx.watts_strogatz_graph(n, k, p, seed=s))
        if is_connected(g):
            return g
    raise TopologyError(
        f"could not draw a connected small-world graph (n={n}, degree={k}, probability={p}) in {MAX_TRIES} "
        "tries; use a larger degree or a smaller rewiring probability"
    )


def erdos_renyi(num_nodes: int, *, probability: float, seed: int) -> Graph:
    """A connected Erdos-Renyi G(n, p) graph: each pair is an edge with ``probability``.

    Re-drawn with derived seeds until connected, at most :data:`MAX_TRIES` times.
    """
    n = _check_nodes(num_nodes, 1, "Erdos-Renyi graph")
    p = _check_probability(probability)
    seed = _check_seed(seed)
    if n == 1:
        return full(1)
    for s in _attempt_seeds(seed):
        g = Graph.from_networkx(nx.gnp_random_graph(n, p, seed=s))
        if is_connected(g):
            return g
    threshold = math.log(n) / n
    raise TopologyError(
        f"Erdos-Renyi G(n={n}, p={p}) was disconnected in all {MAX_TRIES} draws (seed {seed}); use a larger "
        f"probability: G(n, p) is connected with high probability for p well above ln(n)/n = {threshold:.4g}, "
        f"e.g. p >= {min(1.0, 2 * threshold):.4g}"
    )


# ----------------------------------------------------------------------------------------------------- edge files


def from_edge_list(path: str | os.PathLike, *, num_nodes: int | None = None) -> Graph:
    """Read a graph in decentralizepy's edge-list format.

    The first line holds the number of nodes N, then one undirected edge ``u v`` per line (0-based ids).
    Blank lines and ``#`` comments (whole-line or trailing) are ignored; repeated edges are merged.
    Connectivity is *not* checked here (see :func:`check_connected`; :func:`build` checks it).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise TopologyError(f"cannot read edge-list file {path!r}: {e.strerror or e}") from None

    n: int | None = None
    adj: list[set[int]] = []
    for lineno, raw in enumerate(lines, start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        where = f"{path}, line {lineno}"
        if n is None:
            if len(fields) != 1 or not _is_int(fields[0]) or int(fields[0]) < 1:
                raise TopologyError(
                    f"{where}: expected the number of nodes (a positive integer) on the first line, got {raw!r}"
                )
            n = int(fields[0])
            adj = [set() for _ in range(n)]
            continue
        if len(fields) != 2 or not all(_is_int(x) for x in fields):
            raise TopologyError(f"{where}: expected an edge 'u v' (two integers), got {raw!r}")
        u, v = int(fields[0]), int(fields[1])
        if not (0 <= u < n and 0 <= v < n):
            raise TopologyError(
                f"{where}: edge ({u}, {v}) names a node outside 0..{n - 1} (the file declares {n} nodes)"
            )
        if u == v:
            raise TopologyError(f"{where}: self loop on node {u}; remove the line")
        adj[u].add(v)
        adj[v].add(u)
    if n is None:
        raise TopologyError(f"{path}: the edge-list file is empty; its first line must be the number of nodes")
    if num_nodes is not None and int(num_nodes) != n:
        raise TopologyError(
            f"{path} declares {n} nodes but {num_nodes} were asked for; set nodes = {n} or use another file"
        )
    return Graph(n, tuple(tuple(sorted(s)) for s in adj))


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def write_edge_list(graph: Graph, path: str | os.PathLike) -> None:
    """Write ``graph`` in the format :func:`from_edge_list` reads (N, then ``u v`` with ``u < v``)."""
    with open(os.fspath(path), "w", encoding="utf-8") as f:
        f.write(f"{graph.num_nodes}\n")
        for u, v in graph.edges():
            f.write(f"{u} {v}\n")


# ----------------------------------------------------------------------------------------------------- dispatch


def build(kind: str, num_nodes: int, *, seed: int = 0, options: dict[str, Any] | None = None,
          search: tuple[str, ...] = (), **keys: Any) -> Graph:
    """The connected graph of ``kind``: a name registered in :data:`jwins.registry.TOPOLOGIES` (``_`` is
    accepted for ``-``) or ``"package.module:attribute"``. The factory gets ``num_nodes`` (also as ``n``) and
    ``seed`` if it takes them, a built-in the ``[topology]`` keys it reads among ``keys`` (degree,
    probability, path), and the ``options``."""
    from .registry import TOPOLOGIES, call

    factory = TOPOLOGIES.load(kind, search)
    canonical = TOPOLOGIES.canonical(kind)
    reads = TOPOLOGIES.entry(canonical).info.get("keys", ()) if canonical else ()
    if canonical == "file" and not keys.get("path"):
        raise TopologyError("topology 'file' needs a path to an edge-list file (first line N, then 'u v' lines)")
    offered = {"num_nodes": num_nodes, "n": num_nodes, "seed": seed, **{k: v for k, v in keys.items() if k in reads}}
    g = as_graph(call(factory, key="topology.kind", options=options or {}, offered=offered),
                 num_nodes)
    check_connected(g)
    return g


def as_graph(graph: Any, num_nodes: int) -> Graph:
    """A :class:`Graph` from a Graph, a networkx graph or an iterable of ``(u, v)`` edges on ``num_nodes``."""
    if isinstance(graph, Graph):
        g = graph
    elif isinstance(graph, nx.Graph):
        g = Graph.from_networkx(graph)
    elif isinstance(graph, Iterable) and not isinstance(graph, (str, bytes)):
        try:
            g = Graph.from_edges(num_nodes, [tuple(e) for e in graph])
        except (TypeError, ValueError) as e:
            raise TopologyError(f"not a list of (u, v) edges: {e}") from None
    else:
        raise TopologyError(f"a topology is a networkx graph, a jwins.topology.Graph or a list of (u, v) edges, "
                            f"not a {type(graph).__name__}")
    if g.num_nodes != num_nodes:
        raise TopologyError(f"the graph has {g.num_nodes} nodes but nodes = {num_nodes}; they must match")
    return g


# ----------------------------------------------------------------------------------------------------- weights


def metropolis_hastings(graph: Graph, *, sparse: bool = False):
    """Metropolis-Hastings mixing matrix ``[N, N]`` (float64): a dense array, or with ``sparse`` a
    ``scipy.sparse.csr_array`` holding only the edges and the diagonal (what the loop uses: 10,000 nodes of
    degree 4 take 0.6 MB instead of 800 MB).

    ``w_ij = 1 / (1 + max(d_i, d_j))`` for every edge, ``w_ii = 1 - sum_j w_ij``, 0 elsewhere. The result is
    symmetric and doubly stochastic, with a positive diagonal.
    """
    from scipy.sparse import csr_array

    n = graph.num_nodes
    deg = graph.degrees
    edges = graph.edges()
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    u, v = e[:, 0], e[:, 1]
    vals = 1.0 / (1.0 + np.maximum(deg[u], deg[v])) if len(e) else np.zeros(0)
    off = csr_array((np.concatenate([vals, vals]), (np.concatenate([u, v]), np.concatenate([v, u]))), shape=(n, n))
    off.sum_duplicates()
    # each diagonal entry is 1 minus its row's sum taken over the whole dense row, as numpy sums it (the same
    # last bit whatever the storage), one row at a time
    row = np.zeros(n)
    diagonal = np.empty(n)
    for i in range(n):
        lo, hi = off.indptr[i], off.indptr[i + 1]
        row[off.indices[lo:hi]] = off.data[lo:hi]
        diagonal[i] = 1.0 - row.sum()
        row[off.indices[lo:hi]] = 0.0
    w = (off + csr_array((diagonal, (np.arange(n), np.arange(n))), shape=(n, n))).tocsr()
    w.sort_indices()
    return w if sparse else w.toarray()


def spectral_gap(weights: np.ndarray) -> float:
    """``1 - |lambda_2|``, where ``|lambda_2|`` is the second largest eigenvalue modulus of ``weights``.

    Positive for the mixing matrix of a connected graph; 1 for ``J / n`` (full graph); 1 for a single node.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weights must be a square matrix, got shape {w.shape}")
    if w.shape[0] == 1:
        return 1.0
    if np.allclose(w, w.T):
        eig = np.linalg.eigvalsh((w + w.T) / 2)
    else:
        eig = np.linalg.eigvals(w)
    moduli = np.sort(np.abs(eig))[::-1]
    return float(1.0 - moduli[1])
