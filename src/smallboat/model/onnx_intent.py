"""The serving graph: the fused intent network (`model.fused`) and the sequence recommender as
one ONNX graph, run by ONNX Runtime.

Serving's small batches cost mostly per-op dispatch; ONNX Runtime runs the same arithmetic (one
GRU node per member, a few matmuls) with far less of it. Measured on the 2-core dev machine
(shared, torch and ONNX Runtime one thread each, 5 members, hidden 32, median ms per call):

    batch    FusedIntent (torch)   OnnxIntent
    1        0.48                  0.12
    8        1.5                   0.9
    32       3.2                   2.6

(see bench/serve.py part c for the figures of a run).

The graph is written node by node (`onnx.helper`) from the modules' weights rather than traced
by `torch.onnx.export`: the tracer chose how the members' inputs are laid out, and its layout
cost a tenth of each run. Each member runs as its own GRU node (ONNX Runtime's GRU multiplies
every weight, so the fused GRU's zero blocks would cost ~5x the arithmetic), and each GRU reads
the same numbers in the same order as PyTorch's (the member's own input columns), so the graph
gives FusedIntent's probabilities to float32 rounding (largest difference seen ~2e-7) and
exactly what the traced graph gave (bit for bit: probabilities and scores of the 1,807 bench
sessions, batched and one by one). What changed is the layout and what the graph answers:

- each token column's table is stored (V, G, d): the G members' (and, when its widths match,
  the sequence recommender's) embeddings side by side, so one Gather per column gives
  (B, L, G, d), one Concat (B, L, G, D) with each slot's input contiguous, and one Split hands
  each GRU its (L, B, D). The traced graph concatenated column by column, then gathered each
  member's columns back out (a Gather along the last axis: ~30 us a run, the costliest node
  after the GRUs), and gathered the recommender's seven columns again;
- the GRUs' zero initial states and the outputs nothing reads are left out (zero is ONNX's
  default): no Shape -> ConstantOfShape chains to dispatch on every run;
- the recommender's bias and its -inf for the special tokens are one constant (a + 0 is a and
  a + -inf is -inf: the same scores), and its top k is a TopK node with k an input, so the
  service reads k (token, score) pairs, not every SKU's score to rank in torch (its next-item
  section fell from ~0.08 to ~0.02 ms);
- a recommender with its last-viewed-SKU terms (`NextItemModel`, `transition`) finds that SKU
  in the graph (`_last_viewed`: Equal, CumSum, ArgMax, GatherElements, no Shape), and its Markov
  term joins the query's Gemm as more columns: [query, after[p]] . [output[s], before[s]].

CPU time of one run for one real 20-event session (a trained 5,000-session bundle: 5 members
of width 32, the recommender's GRU 64 over 998 SKUs), blocks of 300 runs interleaved on the
busy 2-core machine, median (min) of 21 blocks: traced 0.29 (0.20) ms, this graph with the top
10 0.22 (0.17) ms. Five GRUs of width 32 and one of 64 are ~0.12 ms of it: the floor short of
changing the model. Graph optimisation levels, thread-pool spinning, IO binding and
`run_with_ort_values` were measured too and gained nothing (the last two cost more).

A LightGBM or blend champion's graph holds what of it is neural: a blend's GRU half (its
PROBABILITY is that half's) and the recommender, or the recommender alone (no PROBABILITY): the
trees score with LightGBM's own predictor on the same encoded inputs, and serving combines the
two (`IntentPredictor.predict_inputs`, `model.blend.combine`).

A bundle carries the graph as `ONNX_FILE`, written at publish time (`export_onnx`); a bundle
written before that gets it derived from its weights when it is loaded (`onnx_bytes`), well
under a second. `OnnxIntent` itself needs only ONNX Runtime and NumPy, not torch: it also runs
graphs written by earlier versions (traced, without the top-k outputs), which serve as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from smallboat.features import COUNT_FEATURES, ModelInputs
from smallboat.features.encode import TOKEN_COLUMNS

if TYPE_CHECKING:
    import onnx

    from smallboat.model.fused import FusedIntent
    from smallboat.model.next_item.sequence import NextItemModel

INPUT_NAMES: tuple[str, ...] = (*TOKEN_COLUMNS, "log_gap", "counts")
"""The graph's inputs, in order: the token windows (int64), log_gap and counts (float32)."""
TOP_K = "next_item_k"
"""Input, when the graph has the recommender: how many next items TopK keeps, (1,) int64 (at
most the number of SKU tokens)."""
PROBABILITY = "probability"
"""Output: P(purchase), (B,) float32."""
NEXT_ITEM_SCORES = "next_item_scores"
"""Output, when the bundle has a sequence recommender: its SKU logits, (B, n_sku) float32."""
TOP_SCORES, TOP_TOKENS = "next_item_top_scores", "next_item_top_tokens"
"""Outputs beside NEXT_ITEM_SCORES: the TOP_K best scores per row, best first, (B, k) float32,
and their SKU tokens, (B, k) int64."""
OPSET = 17


def onnx_bytes(fused: FusedIntent | None, next_item: NextItemModel | None = None) -> bytes:
    """The serving graph (a batch axis of any size, windows of any length): the fused network's
    P(purchase) (`fused`: a GRU champion's ensemble, or a blend's GRU half); with `next_item`
    (a `NextItemModel`: the same inputs, SKU logits out) its scores and their top k are further
    outputs of the same graph, so one run answers both heads. `fused` None (a LightGBM
    champion: its trees are not in the graph) leaves the recommender alone in it."""
    import onnx
    from onnx import TensorProto, helper

    if fused is None and next_item is None:
        raise ValueError("a serving graph needs the fused ensemble, the recommender or both")
    graph = _Graph()
    log_counts = graph.node("Log", graph.node("Add", "counts", graph.constant(np.float32(1.0))))
    outputs = []
    x = None  # the recommender's GRU input when it shares the ensemble's Gathers
    if fused is not None:
        x = _intent_head(graph, fused, next_item, log_counts)
        outputs.append(helper.make_tensor_value_info(PROBABILITY, TensorProto.FLOAT, ["batch"]))
    n_counts = len(COUNT_FEATURES) if fused is None else fused.counts.in_features
    inputs = [
        helper.make_tensor_value_info(
            name,
            TensorProto.INT64 if name in TOKEN_COLUMNS else TensorProto.FLOAT,
            ["batch", n_counts] if name == "counts" else ["batch", "length"],
        )
        for name in INPUT_NAMES
    ]
    if next_item is not None:
        if x is None:
            own = {c: _array(next_item.embeddings[c].weight)[:, None] for c in TOKEN_COLUMNS}
            (x,) = graph.gru_inputs(own)
        n_sku = _next_item_head(graph, next_item, x, log_counts)
        inputs.append(helper.make_tensor_value_info(TOP_K, TensorProto.INT64, [1]))
        outputs += [
            helper.make_tensor_value_info(NEXT_ITEM_SCORES, TensorProto.FLOAT, ["batch", n_sku]),
            helper.make_tensor_value_info(TOP_SCORES, TensorProto.FLOAT, ["batch", "k"]),
            helper.make_tensor_value_info(TOP_TOKENS, TensorProto.INT64, ["batch", "k"]),
        ]
    model = helper.make_model(
        helper.make_graph(graph.nodes, "smallboat_serving", inputs, outputs, graph.initializers),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="smallboat",
    )
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _intent_head(
    graph: _Graph, fused: FusedIntent, next_item: NextItemModel | None, log_counts: str
) -> str | None:
    """`FusedIntent`'s P(purchase) as the graph's PROBABILITY output, one GRU node per member.
    When `next_item`'s embeddings have the ensemble's widths, its tables are one more slot of the
    same Gathers: returns that slot's GRU input (L, B, D), else None."""
    members = fused.members_apart()
    m, hidden = fused.n_members, fused.hidden
    tables = {c: _array(fused.tables[c]).reshape(-1, m, fused.token_dims[c]) for c in TOKEN_COLUMNS}
    shared = next_item is not None and all(
        tuple(next_item.embeddings[c].weight.shape) == (tables[c].shape[0], tables[c].shape[2])
        for c in TOKEN_COLUMNS
    )
    if next_item is not None and shared:  # the recommender's embeddings as one more slot
        for c in TOKEN_COLUMNS:
            extra = _array(next_item.embeddings[c].weight)[:, None]
            tables[c] = np.concatenate([tables[c], extra], axis=1)
    slots = graph.gru_inputs(tables)  # (L, B, D) per slot
    states = [
        graph.gru(x, w_ih, w_hh, b_ih, b_hh, hidden)
        for x, (_, (w_ih, w_hh, b_ih, b_hh)) in zip(slots[:m], members, strict=True)
    ]
    last = graph.node("Squeeze", graph.node("Concat", *states, axis=2), graph.constant([0]))
    counts = graph.dense(log_counts, fused.counts, relu=True)  # (B, M*H)
    joined = graph.node("Concat", last, counts, axis=1)  # (B, 2*M*H)
    logits = graph.dense(graph.dense(joined, fused.head1, relu=True), fused.head2)  # (B, M)
    mean = graph.node("ReduceMean", graph.node("Sigmoid", logits), axes=[1], keepdims=0)
    if m == 1:  # a one-member ensemble is its member, unclamped (as FusedIntent)
        graph.node("Identity", mean, out=PROBABILITY)
    else:
        from smallboat.model.intent import PROB_CLAMP  # here: that module imports torch

        low, high = np.float32(PROB_CLAMP), np.float32(1 - PROB_CLAMP)
        graph.node("Clip", mean, graph.constant(low), graph.constant(high), out=PROBABILITY)
    return slots[m] if shared else None


def _next_item_head(graph: _Graph, model: NextItemModel, x: str, log_counts: str) -> int:
    """`NextItemModel.forward` on the GRU input `x` (its dropout is off: eval): the SKU scores
    and their top TOP_K as the graph's outputs; returns the number of SKU tokens."""
    w_ih, w_hh, b_ih, b_hh = model.encoder.all_weights[0]
    state = graph.gru(x, w_ih, w_hh, b_ih, b_hh, model.encoder.hidden_size)
    last = graph.node("Squeeze", state, graph.constant([0]))  # (B, H)
    counts = graph.dense(log_counts, model.counts, relu=True)  # (B, H)
    encoded = graph.node("Concat", last, counts, axis=1)  # (B, 2H)
    first, second = model.head[0], model.head[2]
    query = graph.dense(graph.dense(encoded, first, relu=True), second)  # (B, d)
    table = _array(model.output.weight)  # (n_sku, d)
    offset = _array(model.bias) + _array(model.not_a_sku)  # -inf for the special tokens
    if not model.next_config.transition:
        scores = graph.node(
            "Gemm", query, graph.constant(table), graph.constant(offset), transB=1,
            out=NEXT_ITEM_SCORES,
        )  # fmt: skip
    else:  # the chain term joins the same Gemm: [query, after[p]] . [output[s], before[s]]
        from onnx import TensorProto

        from smallboat.model.next_item.sequence import candidate_leaves  # imports torch

        viewed = _last_viewed(graph)  # (B,)
        after = graph.node("Gather", graph.constant(_array(model.after.weight)), viewed)  # (B, d)
        query = graph.node("Concat", query, after, axis=1)  # (B, 2d)
        table = np.concatenate([table, _array(model.before.weight)], axis=1)  # (n_sku, 2d)
        chained = graph.node("Gemm", query, graph.constant(table), graph.constant(offset), transB=1)
        leaves = model.leaves.detach().cpu()
        leaf = graph.node("Gather", graph.constant(leaves.numpy().astype(np.int64)), viewed)
        leaf = graph.node("Unsqueeze", leaf, graph.constant([1]))  # (B, 1)
        others = graph.constant(candidate_leaves(leaves).numpy().astype(np.int64)[None, :])
        same = graph.node("Equal", leaf, others)  # (B, n_sku)
        same = graph.node("Cast", same, to=TensorProto.FLOAT)
        stay = graph.dense(encoded, model.stay)  # (B, 1)
        scores = graph.node("Add", chained, graph.node("Mul", stay, same), out=NEXT_ITEM_SCORES)
    graph.node("TopK", scores, TOP_K, axis=-1, largest=1, sorted=1, out=(TOP_SCORES, TOP_TOKENS))
    return int(table.shape[0])


def _last_viewed(graph: _Graph) -> str:
    """`sequence.last_viewed` on the graph's inputs: each window's last detail view of a known
    SKU, (B,) int64, 0 when none."""
    from onnx import TensorProto

    from smallboat.features.spec import ACTION_TOKEN, SKU_FIRST

    detail = graph.node("Equal", "action", graph.constant(np.int64(ACTION_TOKEN["detail"])))
    known = graph.node("GreaterOrEqual", "sku", graph.constant(np.int64(SKU_FIRST)))
    mask = graph.node("Cast", graph.node("And", detail, known), to=TensorProto.FLOAT)  # (B, L)
    # The running count of such views peaks first at the last one: ArgMax's first index on ties.
    at = graph.node("ArgMax", graph.node("CumSum", mask, graph.constant(np.int64(1))), axis=1)
    masked = graph.node("Mul", "sku", graph.node("Cast", mask, to=TensorProto.INT64))  # (B, L)
    last = graph.node("GatherElements", masked, at, axis=1)  # (B, 1)
    return graph.node("Squeeze", last, graph.constant([1]))


@dataclass
class _Graph:
    """Nodes and constants of the graph being written; each node's output is a fresh name."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)

    def constant(self, value: Any) -> str:
        """A new initializer holding `value`; returns its name."""
        from onnx import numpy_helper

        name = f"c{len(self.initializers)}"
        array = np.asarray(value)
        if array.dtype == np.int_:
            array = array.astype(np.int64)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(
        self, op: str, *inputs: str, out: str | tuple[str, ...] | None = None, **attrs: Any
    ) -> str:
        """Append an `op` node; returns its (first) output's name: a fresh one, or `out`."""
        from onnx import helper

        if out is None:
            out = f"{op.lower()}{len(self.nodes)}"
        outputs = [out] if isinstance(out, str) else list(out)
        self.nodes.append(helper.make_node(op, list(inputs), outputs, **attrs))
        return outputs[0]

    def dense(self, x: str, linear: Any, *, relu: bool = False) -> str:
        """`linear(x)` (an nn.Linear), then ReLU when asked."""
        out = self.node(
            "Gemm",
            x,
            self.constant(_array(linear.weight)),
            self.constant(_array(linear.bias)),
            transB=1,
        )
        return self.node("Relu", out) if relu else out

    def gru_inputs(self, tables: dict[str, np.ndarray]) -> list[str]:
        """The GRU inputs of G slots whose token embeddings are `tables` ((V, G, d) per token
        column), beside log_gap: each slot's (L, B, D), its columns in PyTorch's order."""
        slots = next(iter(tables.values())).shape[1]
        embedded = [self.node("Gather", self.constant(tables[c]), c) for c in TOKEN_COLUMNS]
        gap = self.node("Unsqueeze", "log_gap", self.constant([2, 3]))  # (B, L, 1, 1)
        ones = self.constant(np.ones((1, 1, slots, 1), np.float32))
        gap = self.node("Mul", gap, ones)  # (B, L, G, 1): log_gap for every slot (x 1: exact)
        x = self.node("Concat", *embedded, gap, axis=3)  # (B, L, G, D)
        x = self.node("Transpose", x, perm=[1, 0, 2, 3])  # (L, B, G, D)
        x = self.node("Reshape", x, self.constant([0, 0, -1]))  # (L, B, G*D): 0 keeps the axis
        width = sum(table.shape[2] for table in tables.values()) + 1  # D
        names = tuple(f"slot{len(self.nodes)}_{k}" for k in range(slots))
        self.node("Split", x, self.constant([width] * slots), axis=2, out=names)
        return list(names)

    def gru(self, x: str, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, hidden: int) -> str:
        """A PyTorch GRU's final state on `x` (L, B, D): (1, B, H). ONNX orders the gates
        (z, r, h) where PyTorch has (r, z, n); linear_before_reset is PyTorch's n gate."""

        def gates(weight: Any) -> np.ndarray:
            r, z, n = np.split(_array(weight), 3, axis=0)
            return np.concatenate([z, r, n], axis=0)

        w, r = self.constant(gates(w_ih)[None]), self.constant(gates(w_hh)[None])
        b = self.constant(np.concatenate([gates(b_ih), gates(b_hh)])[None])
        state = f"gru{len(self.nodes)}_h"
        self.node("GRU", x, w, r, b, out=("", state), hidden_size=hidden, linear_before_reset=1)
        return state


def _array(tensor: Any) -> np.ndarray:
    """A torch tensor's values as a contiguous float32 array."""
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def export_onnx(fused: FusedIntent, path: Path, next_item: NextItemModel | None = None) -> Path:
    """Write the serving graph to `path` (a bundle's ONNX_FILE)."""
    path.write_bytes(onnx_bytes(fused, next_item))
    return path


class OnnxIntent:
    """P(purchase) of encoded prefixes by ONNX Runtime, single-threaded (one request's latency,
    not one batch's throughput, is what a thread pool would trade away: the service batches).
    Runs this module's graphs and the traced ones earlier versions wrote (no top-k outputs)."""

    def __init__(self, model: bytes | Path, *, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.has_top_k = TOP_TOKENS in self.outputs
        self.n_sku = 0
        if self.has_top_k:
            (scores,) = [o for o in self.session.get_outputs() if o.name == NEXT_ITEM_SCORES]
            self.n_sku = int(scores.shape[1])

    @property
    def has_probability(self) -> bool:
        """The graph answers P(purchase) (a LightGBM champion's graph holds the recommender
        only: its trees score on their own)."""
        return PROBABILITY in self.outputs

    @property
    def has_next_item(self) -> bool:
        return NEXT_ITEM_SCORES in self.outputs

    def _feed(self, inputs: ModelInputs, k: int = 1) -> dict[str, np.ndarray]:
        feed = {
            name: np.ascontiguousarray(
                getattr(inputs, name), dtype=np.int64 if name in TOKEN_COLUMNS else np.float32
            )
            for name in INPUT_NAMES
        }
        if self.has_top_k:
            feed[TOP_K] = np.array([max(1, min(k, self.n_sku))], dtype=np.int64)
        return feed

    def run(self, inputs: ModelInputs) -> tuple[np.ndarray | None, np.ndarray | None]:
        """P(purchase) of every row of `inputs`, (N,) float64, when the graph has it, and the
        next-item scores (N, n_sku) float32 when the graph has them, from one run."""
        wanted = [PROBABILITY] if self.has_probability else []
        if self.has_next_item:
            wanted.append(NEXT_ITEM_SCORES)
        results = dict(zip(wanted, self.session.run(wanted, self._feed(inputs)), strict=True))
        return _probability(results.get(PROBABILITY)), results.get(NEXT_ITEM_SCORES)

    def run_top_k(
        self, inputs: ModelInputs, k: int
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """P(purchase) of every row, (N,) float64, when the graph has it, and the
        recommender's best min(k, n_sku) SKU tokens and scores per row, best first, (N, k)
        int64 and float32, from one run (`has_top_k` graphs only)."""
        assert self.has_top_k, "a graph without top-k outputs (written before them)"
        if not self.has_probability:
            values, tokens = self.session.run([TOP_SCORES, TOP_TOKENS], self._feed(inputs, k))
            return None, tokens, values
        prob, values, tokens = self.session.run(
            [PROBABILITY, TOP_SCORES, TOP_TOKENS], self._feed(inputs, k)
        )
        return _probability(prob), tokens, values

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        """P(purchase) for every row of `inputs`, (N,) float64 (graphs that have it)."""
        prob = self.run(inputs)[0]
        assert prob is not None, "a graph without the intent head (a LightGBM champion's)"
        return prob


def _probability(values: np.ndarray | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float64)
