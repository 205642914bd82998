"""Tests for jwins.topology: graph generators, edge files, Metropolis-Hastings weights, spectral gap."""
from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jwins import topology as T
from jwins.errors import ConfigError, TopologyError
from jwins.registry import TOPOLOGIES


def _all_graphs() -> list[tuple[str, T.Graph]]:
    return [
        ("ring", T.ring(10)),
        ("regular", T.regular(12, 3, seed=1)),
        ("torus", T.torus(12)),
        ("small-world", T.small_world(16, 4, probability=0.3, seed=2)),
        ("erdos-renyi", T.erdos_renyi(20, probability=0.3, seed=3)),
        ("full", T.full(7)),
    ]


GRAPHS = _all_graphs()
IDS = [name for name, _ in GRAPHS]


def _assert_valid(g: T.Graph) -> None:
    for i, nbrs in enumerate(g.neighbors):
        assert list(nbrs) == sorted(set(nbrs))
        assert i not in nbrs
        for j in nbrs:
            assert i in g.neighbors[j]


# ----------------------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("n", [3, 4, 10, 33])
def test_ring_degrees(n):
    """Every node of a ring has degree 2, and its neighbours are i-1 and i+1 (mod n)."""
    g = T.ring(n)
    assert g.degrees.tolist() == [2] * n
    for i in range(n):
        assert set(g.neighbors[i]) == {(i - 1) % n, (i + 1) % n}


def test_ring_degenerate_sizes():
    """ring(2) is a single edge and ring(1) a single node; both count as connected."""
    assert T.ring(2).edges() == [(0, 1)]
    assert T.ring(1).edges() == []
    T.check_connected(T.ring(2))
    T.check_connected(T.ring(1))


@pytest.mark.parametrize("n,d", [(10, 3), (12, 4), (20, 5), (7, 6), (16, 2)])
def test_regular_degrees(n, d):
    """A random d-regular graph has every degree equal to d and is connected."""
    g = T.regular(n, d, seed=0)
    assert g.degrees.tolist() == [d] * n
    T.check_connected(g)


@pytest.mark.parametrize("n,rows,cols", [(9, 3, 3), (12, 3, 4), (16, 4, 4), (36, 6, 6), (18, 3, 6)])
def test_torus_shape_and_degrees(n, rows, cols):
    """A torus has degree 4 everywhere, and node r*cols + c neighbours its wrapped row/column neighbours."""
    g = T.torus(n)
    assert g.degrees.tolist() == [4] * n
    for r in range(rows):
        for c in range(cols):
            expected = {
                ((r - 1) % rows) * cols + c,
                ((r + 1) % rows) * cols + c,
                r * cols + (c - 1) % cols,
                r * cols + (c + 1) % cols,
            }
            assert set(g.neighbors[r * cols + c]) == expected


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_full_degrees(n):
    """Every node of the full graph has degree n - 1; it equals networkx's complete graph."""
    g = T.full(n)
    assert g.degrees.tolist() == [n - 1] * n
    assert g == T.Graph.from_networkx(nx.complete_graph(n))


def test_small_world_degree_sum():
    """Watts-Strogatz rewiring keeps the edge count n*k/2; with probability 0 it is the k-nearest ring lattice."""
    g = T.small_world(20, 4, probability=0.5, seed=1)
    assert len(g.edges()) == 20 * 4 // 2
    lattice = T.small_world(20, 4, probability=0.0, seed=1)
    assert lattice.degrees.tolist() == [4] * 20


@pytest.mark.parametrize("name,g", GRAPHS, ids=IDS)
def test_symmetric_no_self_loops_connected(name, g):
    """Every generated graph is symmetric, has sorted neighbour lists without self loops, and is connected."""
    _assert_valid(g)
    T.check_connected(g)
    adj = nx.to_numpy_array(g.to_networkx(), nodelist=range(g.num_nodes))
    assert np.array_equal(adj, adj.T)
    assert np.all(np.diag(adj) == 0)


@pytest.mark.parametrize("name,g", GRAPHS, ids=IDS)
def test_edges_and_degrees_consistent(name, g):
    """edges() lists each edge once with u < v; degrees agree with degree(i) and with the edge count."""
    edges = g.edges()
    assert all(u < v for u, v in edges)
    assert len(set(edges)) == len(edges)
    assert g.degrees.dtype == np.int64
    assert [g.degree(i) for i in range(g.num_nodes)] == g.degrees.tolist()
    assert int(g.degrees.sum()) == 2 * len(edges)


def test_from_networkx_round_trip():
    """Graph -> networkx -> Graph is the identity."""
    for _, g in GRAPHS:
        assert T.Graph.from_networkx(g.to_networkx()) == g


def test_graph_rejects_invalid_structure():
    """Graph() refuses asymmetric adjacency, self loops, unsorted lists and out-of-range ids."""
    bad = [
        ((1,), (0, 2), ()),  # 1 -> 2 without 2 -> 1
        ((0,), (), ()),  # self loop
        ((2, 1), (0,), (0,)),  # unsorted
        ((5,), (), ()),  # out of range
    ]
    for nbrs in bad:
        with pytest.raises(TopologyError):
            T.Graph(3, nbrs)
    with pytest.raises(TopologyError):
        T.Graph.from_networkx(nx.DiGraph([(0, 1)]))
    with pytest.raises(TopologyError, match="convert_node_labels_to_integers"):
        T.Graph.from_networkx(nx.Graph([("a", "b")]))


# ----------------------------------------------------------------------------------------------------- seeds


@pytest.mark.parametrize(
    "make",
    [
        lambda s: T.regular(30, 4, seed=s),
        lambda s: T.small_world(30, 4, probability=0.3, seed=s),
        lambda s: T.erdos_renyi(30, probability=0.2, seed=s),
    ],
    ids=["regular", "small-world", "erdos-renyi"],
)
def test_seed_respected(make):
    """The same seed gives the same graph; a different seed gives a different graph."""
    assert make(5) == make(5)
    assert make(5) != make(6)


def test_no_global_rng_use():
    """Random generators neither read nor advance Python's or numpy's global random state."""
    import random

    random.seed(123)
    np.random.seed(123)
    before = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    a = T.regular(20, 3, seed=1)
    T.erdos_renyi(20, probability=0.3, seed=1)
    T.small_world(20, 4, probability=0.3, seed=1)
    after = (random.random(), np.random.random())
    assert before == after
    random.seed(999)
    assert T.regular(20, 3, seed=1) == a


# ----------------------------------------------------------------------------------------------------- errors


def test_regular_odd_product_error():
    """n * d odd raises TopologyError naming both values and suggesting a fix."""
    with pytest.raises(TopologyError, match=r"7 nodes.*21 is odd"):
        T.regular(7, 3, seed=0)


@pytest.mark.parametrize("d", [10, 11])
def test_regular_degree_too_large_error(d):
    """degree >= num_nodes raises TopologyError naming the values and the largest valid degree."""
    with pytest.raises(TopologyError, match=rf"degree {d} must be smaller than the number of nodes 10.*<= 9"):
        T.regular(10, d, seed=0)


def test_regular_degree_one_error():
    """A 1-regular graph on more than 2 nodes can never be connected, so it is refused up front."""
    with pytest.raises(TopologyError, match="never connected"):
        T.regular(6, 1, seed=0)


@pytest.mark.parametrize("n", [7, 13, 10, 2])
def test_torus_bad_size_error(n):
    """A node count without a rows x cols factorisation with both sides >= 3 raises TopologyError suggesting a
    valid count (prime counts included)."""
    with pytest.raises(TopologyError, match="use a node count like") as info:
        T.torus(n)
    suggested = [int(s) for s in str(info.value).split("like ")[1].split(" (")[0].split(" or ")]
    for m in suggested:
        assert T.torus(m).degrees.tolist() == [4] * m


def test_erdos_renyi_impossible_connectivity_error():
    """G(n, p) that is (almost) never connected raises TopologyError suggesting a larger p with ln(n)/n."""
    with pytest.raises(TopologyError, match=r"larger probability.*ln\(n\)/n = 0\.0460"):
        T.erdos_renyi(100, probability=0.001, seed=0)


def test_small_world_bad_degree_error():
    """Odd or too large small-world degrees are refused."""
    with pytest.raises(TopologyError, match="even"):
        T.small_world(10, 3, probability=0.1, seed=0)
    with pytest.raises(TopologyError, match="even"):
        T.small_world(10, 10, probability=0.1, seed=0)


def test_bad_probability_and_seed():
    """Probabilities outside [0, 1] and negative or non-integer seeds raise TopologyError."""
    with pytest.raises(TopologyError, match=r"\[0, 1\]"):
        T.erdos_renyi(10, probability=1.5, seed=0)
    with pytest.raises(TopologyError, match="seed"):
        T.regular(10, 3, seed=-1)
    with pytest.raises(TopologyError, match="seed"):
        T.regular(10, 4, seed=1.5)
    with pytest.raises(TopologyError, match="degree must be an integer"):
        T.regular(10, 2.5, seed=0)


def test_build_dispatch_and_unknown_kind():
    """build dispatches every registered kind (underscores accepted) and lists them for an unknown one."""
    assert T.build("ring", 6) == T.ring(6)
    assert T.build("regular", 10, degree=3, seed=2) == T.regular(10, 3, seed=2)
    assert T.build("torus", 9) == T.torus(9)
    assert T.build("small_world", 10, degree=4, probability=0.2, seed=1) == T.small_world(
        10, 4, probability=0.2, seed=1
    )
    assert T.build("erdos-renyi", 10, probability=0.5, seed=1) == T.erdos_renyi(10, probability=0.5, seed=1)
    assert T.build("full", 4) == T.full(4)
    with pytest.raises(ConfigError, match="choose one of: ring, regular, torus, small-world, erdos-renyi, full, file"):
        T.build("star", 5)
    with pytest.raises(TopologyError, match="needs a path"):
        T.build("file", 5)
    assert isinstance(TopologyError("x"), ValueError)
    assert set(TOPOLOGIES.names()) == {"ring", "regular", "torus", "small-world", "erdos-renyi", "full", "file"}


def test_check_connected_message():
    """A disconnected graph is refused with the number and sizes of its components and a fix."""
    g = T.Graph.from_edges(6, [(0, 1), (1, 2), (3, 4)])
    with pytest.raises(TopologyError, match=r"graph is disconnected: 3 components \(sizes 3, 2, 1\);.*denser"):
        T.check_connected(g)


# ----------------------------------------------------------------------------------------------------- edge files


def test_edge_list_round_trip(tmp_path):
    """write_edge_list then from_edge_list gives back the same graph, for every generator."""
    for name, g in GRAPHS:
        p = tmp_path / f"{name}.edges"
        T.write_edge_list(g, p)
        assert T.from_edge_list(p) == g
        assert T.from_edge_list(str(p), num_nodes=g.num_nodes) == g
        assert T.build("file", g.num_nodes, path=str(p)) == g


def test_edge_list_format_details(tmp_path):
    """Blank lines, comments, either edge direction and repeated edges are accepted; the first line is N."""
    p = tmp_path / "g.txt"
    p.write_text("# a triangle plus a tail\n4\n\n0 1\n1 0\n2 1  # trailing comment\n0 2\n3 2\n")
    g = T.from_edge_list(p)
    assert g.num_nodes == 4
    assert g.edges() == [(0, 1), (0, 2), (1, 2), (2, 3)]
    first_line = (tmp_path / "w.txt")
    T.write_edge_list(g, first_line)
    assert first_line.read_text().splitlines() == ["4", "0 1", "0 2", "1 2", "2 3"]


@pytest.mark.parametrize(
    "text,lineno,fragment",
    [
        ("3\n0 1\n1 x\n", 3, "two integers"),
        ("3\n0 1\n\n1 2 5\n", 4, "two integers"),
        ("3\n0 3\n", 2, "outside 0..2"),
        ("3\n0 1\n-1 2\n", 3, "outside 0..2"),
        ("3\n0 1\n2 2\n", 3, "self loop"),
        ("three\n0 1\n", 1, "number of nodes"),
    ],
)
def test_edge_list_malformed_line_named(tmp_path, text, lineno, fragment):
    """A malformed line, an out-of-range id or a self loop raises TopologyError naming the file and line."""
    p = tmp_path / "bad.edges"
    p.write_text(text)
    with pytest.raises(TopologyError, match=rf"bad\.edges, line {lineno}: .*{fragment}"):
        T.from_edge_list(p)


def test_edge_list_node_count_mismatch_and_missing(tmp_path):
    """A file whose N differs from num_nodes, an empty file and a missing file raise TopologyError."""
    p = tmp_path / "g.edges"
    T.write_edge_list(T.ring(5), p)
    with pytest.raises(TopologyError, match="declares 5 nodes but 6"):
        T.from_edge_list(p, num_nodes=6)
    with pytest.raises(TopologyError, match="declares 5 nodes but 6"):
        T.build("file", 6, path=str(p))
    (tmp_path / "empty").write_text("\n# nothing\n")
    with pytest.raises(TopologyError, match="empty"):
        T.from_edge_list(tmp_path / "empty")
    with pytest.raises(TopologyError, match="cannot read"):
        T.from_edge_list(tmp_path / "nope")


def test_disconnected_edge_file(tmp_path):
    """from_edge_list reads a disconnected file as is; build('file') refuses it as disconnected."""
    p = tmp_path / "split.edges"
    p.write_text("5\n0 1\n1 2\n3 4\n")
    g = T.from_edge_list(p)
    assert g.edges() == [(0, 1), (1, 2), (3, 4)]
    with pytest.raises(TopologyError, match=r"disconnected: 2 components \(sizes 3, 2\)"):
        T.build("file", 5, path=str(p))


# ----------------------------------------------------------------------------------------------------- weights


MH_GRAPHS = GRAPHS + [("ring2", T.ring(2)), ("single", T.full(1))]


@pytest.mark.parametrize("name,g", MH_GRAPHS, ids=[name for name, _ in MH_GRAPHS])
def test_metropolis_hastings_properties(name, g):
    """MH weights are float64, symmetric, nonnegative, rows and columns sum to 1, and zero off the graph."""
    w = T.metropolis_hastings(g)
    n = g.num_nodes
    assert w.shape == (n, n) and w.dtype == np.float64
    assert np.array_equal(w, w.T)
    assert np.all(w >= 0)
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert np.allclose(w.sum(axis=0), 1.0, atol=1e-12)
    adj = np.zeros((n, n), dtype=bool)
    for u, v in g.edges():
        adj[u, v] = adj[v, u] = True
    off = ~adj & ~np.eye(n, dtype=bool)
    assert np.all(w[off] == 0)
    assert np.all(w[adj] > 0)
    assert np.all(np.diag(w) > 0)


def test_metropolis_hastings_hand_computed():
    """On the path 0-1-2 plus the edge 1-3 (a star with centre 1, degrees 1,3,1,1) every edge weight is
    1/(1+3) = 1/4, so w_11 = 1 - 3/4 = 1/4 and the leaves keep 3/4; on the path 0-1-2, w_01 = w_12 = 1/3."""
    star = T.Graph.from_edges(4, [(0, 1), (1, 2), (1, 3)])
    expected = np.array(
        [
            [3 / 4, 1 / 4, 0, 0],
            [1 / 4, 1 / 4, 1 / 4, 1 / 4],
            [0, 1 / 4, 3 / 4, 0],
            [0, 1 / 4, 0, 3 / 4],
        ]
    )
    assert np.allclose(T.metropolis_hastings(star), expected, atol=0, rtol=1e-15)
    path = T.Graph.from_edges(3, [(0, 1), (1, 2)])
    expected = np.array([[2 / 3, 1 / 3, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 3, 2 / 3]])
    assert np.allclose(T.metropolis_hastings(path), expected, atol=0, rtol=1e-15)


@given(
    n=st.integers(min_value=2, max_value=25),
    p=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**31),
)
@settings(max_examples=40, deadline=None)
def test_metropolis_hastings_random_graphs(n, p, seed):
    """For arbitrary (even disconnected) G(n, p) graphs MH weights stay symmetric and doubly stochastic, and
    match the formula 1/(1+max(d_i, d_j)) on every edge."""
    g = T.Graph.from_networkx(nx.gnp_random_graph(n, p, seed=seed))
    w = T.metropolis_hastings(g)
    d = g.degrees
    assert np.array_equal(w, w.T)
    assert np.all(w >= -1e-15)
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-12)
    for u, v in g.edges():
        assert w[u, v] == 1.0 / (1 + max(d[u], d[v]))


@pytest.mark.parametrize("name,g", GRAPHS, ids=IDS)
def test_spectral_gap_positive_for_connected(name, g):
    """The MH matrix of a connected graph has spectral gap in (0, 1]."""
    gap = T.spectral_gap(T.metropolis_hastings(g))
    assert 0 < gap <= 1 + 1e-12


@pytest.mark.parametrize("n", [2, 5, 16])
def test_spectral_gap_full_graph_is_one(n):
    """On the full graph MH gives W = J/n, whose eigenvalues are 1 and 0, so the gap is 1."""
    w = T.metropolis_hastings(T.full(n))
    assert np.allclose(w, np.full((n, n), 1 / n), atol=1e-15)
    assert T.spectral_gap(w) == pytest.approx(1.0, abs=1e-12)


def test_spectral_gap_disconnected_and_known_values():
    """A disconnected graph has gap 0 (eigenvalue 1 twice); the ring's gap matches the closed form
    1 - (1 + 2 cos(2 pi / n)) / 3; a non-symmetric matrix is handled too."""
    disconnected = T.Graph.from_edges(4, [(0, 1), (2, 3)])
    assert T.spectral_gap(T.metropolis_hastings(disconnected)) == pytest.approx(0.0, abs=1e-12)
    n = 10
    assert T.spectral_gap(T.metropolis_hastings(T.ring(n))) == pytest.approx(
        1 - (1 + 2 * np.cos(2 * np.pi / n)) / 3, abs=1e-12
    )
    assert T.spectral_gap(np.array([[0.5, 0.5], [0.0, 1.0]])) == pytest.approx(0.5)
    assert T.spectral_gap(np.ones((1, 1))) == 1.0


def test_all_small_regular_graphs_connected_across_seeds():
    """Across many seeds the regular generator always returns a connected d-regular graph (retries work)."""
    for seed, (n, d) in itertools.product(range(15), [(8, 2), (10, 3), (20, 4)]):
        g = T.regular(n, d, seed=seed)
        assert g.degrees.tolist() == [d] * n
        T.check_connected(g)
