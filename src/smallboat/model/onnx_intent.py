"""The fused intent network (`model.fused`) exported to ONNX and run by ONNX Runtime.

Serving's small batches cost mostly per-op dispatch; ONNX Runtime runs the same graph (one GRU
node, a few matmuls) with far less of it. Measured on the 2-core dev machine (shared, torch and
ONNX Runtime one thread each, 5 members, hidden 32, median ms per call):

    batch    FusedIntent (torch)   OnnxIntent
    1        0.48                  0.12
    8        1.5                   0.9
    32       3.2                   2.6

(see bench/serve.py part c for the figures of a run). The graph is the fused network's, so it
gives the ensemble's probabilities to float32 rounding (largest difference seen ~2e-7).

Two things keep the graph lean. Each member runs as its own GRU node (`FusedIntent.members_apart`):
ONNX Runtime's GRU multiplies every weight, so the fused GRU's zero blocks made it do ~5x the
arithmetic (one session of a trained bundle: the run's median ~0.23 -> ~0.18 ms). And the GRUs'
zero initial states, which the exporter builds from the input's shape (five nodes each), are
left out: zero is ONNX's default (`_without_zero_states`, ~0.008 ms a run).

A bundle carries the graph as `ONNX_FILE`, written at publish time (`export_onnx`); a bundle
written before that gets it derived from its weights when it is loaded (`onnx_bytes`), about a
second. `OnnxIntent` itself needs only ONNX Runtime and NumPy, not torch.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from smallboat.features import ModelInputs
from smallboat.features.encode import TOKEN_COLUMNS

if TYPE_CHECKING:
    from torch.nn import Module

    from smallboat.model.fused import FusedIntent

INPUT_NAMES: tuple[str, ...] = (*TOKEN_COLUMNS, "log_gap", "counts")
"""The graph's inputs, in order: the token windows (int64), log_gap and counts (float32)."""
PROBABILITY = "probability"
"""Output: P(purchase), (B,) float32."""
NEXT_ITEM_SCORES = "next_item_scores"
"""Output, when the bundle has a sequence recommender: its SKU logits, (B, n_sku) float32."""
OPSET = 17


def onnx_bytes(fused: FusedIntent, next_item: Module | None = None) -> bytes:
    """The fused network as an ONNX graph (a batch axis of any size, windows of any length); with
    `next_item` (a `NextItemModel`: the same inputs, SKU logits out) its scores are a second
    output of the same graph, so one run answers both heads."""
    import torch

    class _Heads(torch.nn.Module):  # torch.onnx traces positional tensors, not a dict
        def __init__(self) -> None:
            super().__init__()
            self.fused = fused
            self.apart = fused.members_apart()  # one GRU node per member: see the docstring
            self.next_item = next_item

        def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
            batch = dict(zip(INPUT_NAMES, tensors, strict=True))
            prob = self.fused(batch, self.apart)
            return (prob,) if self.next_item is None else (prob, self.next_item(batch))

    # Traced at batch 1 (the exporter's advice for a GRU); the batch and length axes are dynamic.
    windows = [
        torch.zeros(1, 4, dtype=torch.int64 if name in TOKEN_COLUMNS else torch.float32)
        for name in INPUT_NAMES[:-1]
    ]
    example = (*windows, torch.zeros(1, fused.counts.in_features, dtype=torch.float32))
    outputs = [PROBABILITY] if next_item is None else [PROBABILITY, NEXT_ITEM_SCORES]
    axes = {name: {0: "batch", 1: "length"} for name in INPUT_NAMES[:-1]}
    axes |= {name: {0: "batch"} for name in ("counts", *outputs)}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter's deprecation notice, and its caution about a GRU with a
        # dynamic batch: the graph's zero initial state takes any batch (the parity tests run
        # batches of 1 to 250 against PyTorch).
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            # In eval mode: the exporter puts the modules back in the mode it found them in, and
            # a new module's is training (which would leave `next_item`'s dropout on).
            _Heads().eval(),
            example,
            buffer,  # type: ignore[arg-type]  # a file object works (the legacy exporter writes to it)
            input_names=list(INPUT_NAMES),
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter has GRU's symbolic: no onnxscript rewrite
        )
    return _without_zero_states(buffer.getvalue())


def _without_zero_states(graph: bytes) -> bytes:
    """`graph` without the GRUs' all-zero initial states (ONNX's default when the input is left
    out) and the Shape -> ... -> ConstantOfShape chains that built them, nor the GRU outputs
    nothing reads: about ten nodes fewer for ONNX Runtime to dispatch on every run."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(graph)
    nodes = model.graph.node
    producer = {name: node for node in nodes for name in node.output}
    for node in nodes:
        if node.op_type != "GRU" or len(node.input) < 6 or not node.input[5]:
            continue
        source = producer.get(node.input[5])  # initial_h
        if source is None or source.op_type != "ConstantOfShape":
            continue
        fill = [numpy_helper.to_array(a.t) for a in source.attribute if a.name == "value"]
        if not fill or not fill[0].any():  # ConstantOfShape fills with 0 by default
            del node.input[5:]  # initial_h is GRU's last input: nothing after it to keep
            while not node.input[-1]:  # nor the empty sequence_lens before it
                node.input.pop()
    read = {name for node in nodes for name in node.input} | {o.name for o in model.graph.output}
    for node in nodes:
        if node.op_type == "GRU":  # outputs Y and Y_h are optional: "" leaves one out
            for i, name in enumerate(node.output):
                node.output[i] = name if name in read else ""
            while node.output and not node.output[-1]:
                node.output.pop()
    while True:  # drop what nothing reads any more, until nothing changes
        read = {name for node in nodes for name in node.input}
        read |= {o.name for o in model.graph.output}
        dead = [node for node in nodes if not any(name in read for name in node.output if name)]
        if not dead:
            break
        for node in dead:
            nodes.remove(node)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(fused: FusedIntent, path: Path, next_item: Module | None = None) -> Path:
    """Write the serving graph to `path` (a bundle's ONNX_FILE)."""
    path.write_bytes(onnx_bytes(fused, next_item))
    return path


class OnnxIntent:
    """P(purchase) of encoded prefixes by ONNX Runtime, single-threaded (one request's latency,
    not one batch's throughput, is what a thread pool would trade away: the service batches)."""

    def __init__(self, model: bytes | Path, *, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

        self.outputs = [o.name for o in self.session.get_outputs()]

    @property
    def has_next_item(self) -> bool:
        return NEXT_ITEM_SCORES in self.outputs

    def run(self, inputs: ModelInputs) -> tuple[np.ndarray, np.ndarray | None]:
        """P(purchase) of every row of `inputs`, (N,) float64, and the next-item scores (N,
        n_sku) float32 when the graph has them, from one run."""
        feed = {
            name: np.ascontiguousarray(
                getattr(inputs, name), dtype=np.int64 if name in TOKEN_COLUMNS else np.float32
            )
            for name in INPUT_NAMES
        }
        results = self.session.run(self.outputs, feed)
        prob = np.asarray(results[0], dtype=np.float64)
        return prob, (results[1] if len(results) > 1 else None)

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        """P(purchase) for every row of `inputs`, (N,) float64."""
        return self.run(inputs)[0]
