"""An IntentEnsemble's members fused into one wide model, for fast small-batch inference.

Serving scores one session at a time, and running M small IntentModels one after another costs
mostly per-op dispatch (~5 x 20 ops plus 5 GRU loops of 20 steps). `FusedIntent` re-arranges
the same weights into ONE model of width M*H whose blocks keep the members apart:

    embeddings   one table per token column: the members' tables side by side    (V, M*d)
    GRU          hidden M*H; weight_ih / weight_hh / biases block-structured by member inside
                 each of PyTorch's [r; z; n] gate blocks; the log_gap column is shared
    counts       the members' Linear layers stacked                               (M*H, n_counts)
    head         layer 1 block-structured over [last_all, counts_all]             (M*H, 2*M*H)
                 layer 2 a (M, M*H) block matrix: the M members' logits
    output       mean over members of sigmoid(logit), clamped like IntentEnsemble

The zero blocks make it mathematically identical to the ensemble; only float32 rounding differs
(~1e-7, BLAS sums the same terms in another order). It is for inference only: nothing trains it.

Measured on the 2-core dev machine (shared, so +-10%), torch.set_num_threads(1), median ms per
call over random left-padded windows of up to 20 events; `predict_proba(ensemble, x)` against
`FusedIntent.predict(x)`, 5 members, hidden 32, largest difference seen 1.2e-7:

    batch    a trained bundle (n_sku 562)   random weights, n_sku 20,000
             ensemble   fused               ensemble   fused
    1        1.85       0.48                1.89       0.50
    8        2.4        1.5                 2.6        1.7
    32       3.35       3.2                 3.75       3.3
    128      6.5        11.5                7.2        11.1

Batch 1 is ~3.8x faster. Large batches are slower fused: the zero blocks are multiplied too, so
the GRU does M times the ensemble's arithmetic, and from ~32 sessions on compute outweighs the
dispatch saved. Keep `predict_proba(ensemble, ...)` for offline scoring.

ONNX Runtime is the other way round: its GRU node has little dispatch to save and pays for
every multiply, so the serving graph (`model.onnx_intent`) runs `forward(batch, apart)`, where
`apart = members_apart()` cuts each member's GRU back out of the blocks: one GRU node per member,
each reading its own input columns. On one 20-event session of a trained 5-member bundle
(`session.run`, one thread) the graph's median fell from ~0.23 to ~0.18 ms: a lone GRU node of
width 160 costs ~140 us, five of width 32 ~85 us. PyTorch keeps the wide GRU (five `torch.gru`
calls cost it more dispatch than the zero blocks cost arithmetic).

Tried and not kept: `torch.jit.trace` (+ `freeze` / `optimize_for_inference`) saved only
~0.025 ms at batch 1 beside this eager code, for a deprecated code path and traced shapes to
reason about; one `embedding_bag` over a block table instead of seven lookups and a cat was no
faster. Kept: `inference_mode`, functional calls on the weights instead of eleven module calls
(~0.05 ms), and `torch.gru` called directly instead of `nn.GRU.forward`, whose Python checks cost
~0.045 ms a call. About two thirds of what is left is the GRU's own 20-step loop (in C++).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from smallboat.features import ModelInputs
from smallboat.features.encode import TOKEN_COLUMNS
from smallboat.model.intent import PROB_CLAMP, IntentEnsemble, IntentModel, to_tensors

MemberGru = tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
"""One member's GRU cut out of the fused one: its input columns (d_in,) of the fused input, and
its (weight_ih, weight_hh, bias_ih, bias_hh)."""


class FusedIntent(nn.Module):
    """All members of an IntentEnsemble run as one model; returns P(purchase), not logits."""

    def __init__(
        self, *, members: int, hidden: int, tokens: dict[str, tuple[int, int]], n_counts: int
    ) -> None:
        """Zero weights of the fused shapes; `tokens` maps each token column to one member's
        (vocabulary size, embedding dim). `from_ensemble` fills them."""
        super().__init__()
        assert members >= 1 and hidden >= 1, f"members {members}, hidden {hidden}"
        assert set(tokens) == set(TOKEN_COLUMNS), f"token columns {sorted(tokens)}"
        self.n_members = members
        self.hidden = hidden
        self.token_dims = {name: tokens[name][1] for name in TOKEN_COLUMNS}
        width = members * hidden
        self.tables = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(n, members * d)) for name, (n, d) in tokens.items()}
        )  # each (V, M*d)
        d_in = members * sum(self.token_dims.values()) + 1  # + the shared log_gap column
        self.encoder = nn.GRU(d_in, width, batch_first=True)
        self.counts = nn.Linear(n_counts, width)
        self.head1 = nn.Linear(2 * width, width)
        self.head2 = nn.Linear(width, members)
        with torch.no_grad():
            for weight in self.parameters():
                weight.zero_()  # the blocks outside a member's own stay zero
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_ensemble(cls, ensemble: IntentEnsemble) -> FusedIntent:
        """The ensemble's weights copied into one fused model (the ensemble is left as it was)."""
        members = _checked_members(ensemble)
        first = members[0]
        tables = {name: first.embeddings[name] for name in TOKEN_COLUMNS}
        tokens = {name: (t.num_embeddings, t.embedding_dim) for name, t in tables.items()}
        fused = cls(
            members=len(members),
            hidden=first.encoder.hidden_size,
            tokens=tokens,
            n_counts=first.counts.in_features,
        )
        with torch.no_grad():
            for name in TOKEN_COLUMNS:
                fused.tables[name].copy_(torch.cat([m.embeddings[name].weight for m in members], 1))
            for k, member in enumerate(members):
                fused._copy_member(k, member)
        return fused

    def _member_index(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where member k lives in the fused GRU: its units inside an (M*H) block (H,), its
        rows of the gate-stacked weights (3H,), and its input columns (d_in,)."""
        m, h = self.n_members, self.hidden
        own = torch.arange(h) + k * h
        # PyTorch stacks the gates [r; z; n] along the rows: member row g*H + j is fused row
        # g*M*H + k*H + j.
        gate_rows = torch.cat([own + g * m * h for g in range(3)])
        # Member input column j of token column c is fused column (c's start) + k*d_c + j.
        cols, start = [], 0
        for d in self.token_dims.values():
            cols.append(torch.arange(d) + start + k * d)
            start += m * d
        cols.append(torch.tensor([start]))  # the shared log_gap
        return own, gate_rows, torch.cat(cols)

    def _copy_member(self, k: int, member: IntentModel) -> None:
        """Member k's GRU, counts and head weights into its blocks of the fused layers."""
        m, h = self.n_members, self.hidden
        own, gate_rows, in_cols = self._member_index(k)
        w_ih, w_hh, b_ih, b_hh = self.encoder.all_weights[0]
        own_ih, own_hh, own_b_ih, own_b_hh = member.encoder.all_weights[0]
        w_ih[gate_rows.unsqueeze(1), in_cols] = own_ih  # (3H, d_in)
        w_hh[gate_rows.unsqueeze(1), own] = own_hh  # (3H, H)
        b_ih[gate_rows] = own_b_ih
        b_hh[gate_rows] = own_b_hh
        self.counts.weight[own] = member.counts.weight  # (H, n_counts)
        self.counts.bias[own] = member.counts.bias
        lin1, lin2 = member.head[0], member.head[2]
        assert isinstance(lin1, nn.Linear) and isinstance(lin2, nn.Linear), member.head
        self.head1.weight[own.unsqueeze(1), torch.cat([own, own + m * h])] = lin1.weight
        self.head1.bias[own] = lin1.bias
        self.head2.weight[k, own] = lin2.weight[0]
        self.head2.bias[k] = lin2.bias[0]

    def members_apart(self) -> list[MemberGru]:
        """Each member's GRU cut back out of the fused one: its input columns and its
        (weight_ih, weight_hh, bias_ih, bias_hh), for `forward(batch, apart=...)`."""
        w_ih, w_hh, b_ih, b_hh = self.encoder.all_weights[0]
        apart: list[MemberGru] = []
        for k in range(self.n_members):
            own, rows, cols = self._member_index(k)
            weights = (
                w_ih[rows][:, cols].contiguous(),  # (3H, d_in)
                w_hh[rows][:, own].contiguous(),  # (3H, H)
                b_ih[rows].contiguous(),
                b_hh[rows].contiguous(),
            )
            apart.append((cols, weights))
        return apart

    def forward(
        self, batch: dict[str, torch.Tensor], apart: list[MemberGru] | None = None
    ) -> torch.Tensor:
        """P(purchase), (B,) float32: what `predict_proba` gives for the ensemble. With `apart`
        (`members_apart()`), each member's GRU runs on its own instead of the wide one."""
        embedded = [F.embedding(batch[c], self.tables[c]) for c in TOKEN_COLUMNS]  # (B, L, M*d_c)
        x = torch.cat([*embedded, batch["log_gap"].unsqueeze(-1)], dim=-1)  # (B, L, D)
        last = self._last_wide(x) if apart is None else self._last_apart(x, apart)  # (B, M*H)
        counts = torch.relu(F.linear(torch.log1p(batch["counts"]), *self._wb(self.counts)))
        joined = torch.cat([last, counts], dim=-1)  # (B, 2*M*H)
        hidden = torch.relu(F.linear(joined, *self._wb(self.head1)))  # (B, M*H)
        prob = torch.sigmoid(F.linear(hidden, *self._wb(self.head2))).mean(dim=-1)  # (B,)
        if self.n_members == 1:
            return prob  # a one-member IntentEnsemble returns its member's logit, unclamped
        return prob.clamp(PROB_CLAMP, 1 - PROB_CLAMP)

    def _last_wide(self, x: torch.Tensor) -> torch.Tensor:
        """The fused GRU's state after the last event, (B, M*H)."""
        enc = self.encoder
        h0 = x.new_zeros(1, x.shape[0], enc.hidden_size)  # (1, B, M*H)
        # torch.gru is what nn.GRU.forward ends in, without its per-call Python checks (~0.045
        # ms, a tenth of batch-1 latency); arguments: biases, layers, dropout, train,
        # bidirectional, batch_first.
        weights = tuple(enc.all_weights[0])  # (weight_ih, weight_hh, bias_ih, bias_hh)
        out, _ = torch.gru(x, h0, weights, True, 1, 0.0, False, False, True)  # (B, L, M*H)
        return out[:, -1]  # windows are left-padded, the last event is last

    def _last_apart(self, x: torch.Tensor, apart: list[MemberGru]) -> torch.Tensor:
        """The members' GRU states after the last event, each GRU run on its own member's input
        columns, side by side: (B, M*H), the same numbers as `_last_wide`."""
        x = x.transpose(0, 1)  # (L, B, D): the GRU's own layout, one transpose for all members
        columns = torch.cat([cols for cols, _ in apart])  # every member's columns, in order
        inputs = x.index_select(2, columns).split([len(cols) for cols, _ in apart], dim=2)
        h0 = x.new_zeros(1, x.shape[1], self.hidden)  # (1, B, H)
        states = [
            torch.gru(x_k, h0, weights, True, 1, 0.0, False, False, False)[1]  # (1, B, H)
            for x_k, (_, weights) in zip(inputs, apart, strict=True)
        ]
        return torch.cat(states, dim=-1)[0]  # (B, M*H)

    @staticmethod
    def _wb(linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        return linear.weight, linear.bias

    def predict(self, inputs: ModelInputs) -> np.ndarray:
        """P(purchase) for every row of `inputs`, (N,) float64, in one batch."""
        with torch.inference_mode():
            # No copies when the arrays already have these dtypes (encode_sessions' output).
            prob: np.ndarray = self(to_tensors(inputs)).numpy().astype(np.float64)
        return prob


def _checked_members(ensemble: IntentEnsemble) -> list[IntentModel]:
    """The ensemble's members, after checking they have the layout FusedIntent reproduces."""
    if not isinstance(ensemble, IntentEnsemble):
        raise TypeError(f"FusedIntent.from_ensemble needs an IntentEnsemble, got {ensemble!r:.80}")
    members: list[IntentModel] = []
    for i, member in enumerate(ensemble.members):
        if not isinstance(member, IntentModel):
            raise TypeError(f"ensemble member {i} is a {type(member).__name__}, not IntentModel")
        members.append(member)
    if not members or len(members) != ensemble.config.members:
        raise ValueError(
            f"the ensemble holds {len(members)} members but its config says "
            f"{ensemble.config.members}; build it with IntentEnsemble.of(members)"
        )
    first = members[0]
    gru = first.encoder
    if gru.num_layers != 1 or gru.bidirectional or not gru.bias or not gru.batch_first:
        raise ValueError(
            f"FusedIntent fuses a 1-layer, one-way, biased, batch_first GRU; member 0 has {gru}"
        )
    d_in = sum(first.embeddings[name].embedding_dim for name in TOKEN_COLUMNS) + 1
    if gru.input_size != d_in:
        raise ValueError(
            f"member 0's GRU reads {gru.input_size} inputs; its embeddings + log_gap give {d_in}"
        )
    shapes = {key: tuple(value.shape) for key, value in first.state_dict().items()}
    for i, member in enumerate(members[1:], start=1):
        other = {key: tuple(value.shape) for key, value in member.state_dict().items()}
        if other != shapes:
            differ = sorted(
                k for k in shapes.keys() | other.keys() if shapes.get(k) != other.get(k)
            )
            raise ValueError(
                f"ensemble member {i} differs in shape from member 0 at {differ}: "
                f"{[other.get(k) for k in differ]} vs {[shapes.get(k) for k in differ]}"
            )
    return members
