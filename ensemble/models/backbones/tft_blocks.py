"""Variable selection for TFT over F real features, vectorised across the features.

pytorch-forecasting's ``VariableSelectionNetwork`` runs one prescaler and one
``GatedResidualNetwork`` per feature in a Python loop: ~107 small kernels per layer per step,
which dominates a TFT step on CPU. ``VectorisedVariableSelection`` holds the same parameters,
stacked along a leading feature axis, and runs every per-feature GRN at once with batched
matmuls. ``LibraryVariableSelection`` wraps the stock module behind the same interface; it is the
reference the vectorised one is tested and benchmarked against (``copy_library_weights``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _interpolation_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """The linear map of ``F.interpolate(mode="linear", align_corners=True)`` from size_in to size_out,
    which the library's ``ResampleNorm`` applies to a GRN's residual."""
    eye = torch.eye(size_in).unsqueeze(1)  # (c, 1, c)
    return F.interpolate(eye, size_out, mode="linear", align_corners=True).squeeze(1)  # (c, H)


# On CPU, rows are processed in chunks whose largest intermediate stays under 16 MiB: below glibc's
# mmap threshold (32 MiB), freed blocks are reused instead of being unmapped and page-faulted back
# in on every step, and chunks sit closer to cache (measured ~1.5x per step at B=256, L=60, F=107).
CHUNK_BYTES = 16 * 2**20
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, as in the library's ResampleNorm / AddNorm


class VectorisedVariableSelection(nn.Module):
    """Per-step variable selection over ``num_inputs`` real features, all feature GRNs at once.

    Parameterisation per feature f, as the library builds it for a real variable:
    prescaler ``Linear(1, c)``, then ``GatedResidualNetwork(c, min(c, H), H)`` (fc1, ELU, fc2, GLU,
    add & per-feature LayerNorm, with a resampled, gated, normed residual when c != H). The
    selection weights come from one library GRN over all prescaled embeddings, then softmax.

    The residual branch is computed in closed form: the prescaled embedding is affine in the scalar
    feature value x, so its resampled, gated version is ``x u + v`` (u, v in R^H per feature), and
    its LayerNorm is ``(x p + q) / sqrt(x^2 P + 2 x Q + R + eps)`` with p, q the centred u, v and
    P, Q, R their mean products. That replaces four passes over (F, N, H) tensors by one batched
    matmul; the result equals the library's up to float rounding.

    Args:
        num_inputs: F, the number of real features.
        input_size: c, the prescaled embedding size of each feature (TFT's hidden_continuous_size).
        hidden_size: H, the output size.
        dropout: as in the library GRNs.
    """

    def __init__(self, num_inputs: int, input_size: int, hidden_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import GatedResidualNetwork

        nf, c, h = num_inputs, input_size, hidden_size
        inner = min(c, h)
        self.num_inputs, self.input_size, self.hidden_size = nf, c, h
        self.chunk_rows = max(1, CHUNK_BYTES // (4 * nf * 2 * h))
        self.prescale_weight = nn.Parameter(torch.empty(nf, 1, c))
        self.prescale_bias = nn.Parameter(torch.empty(nf, 1, c))
        self.fc1_weight = nn.Parameter(torch.empty(nf, c, inner))  # stored (in, out): ready for bmm
        self.fc1_bias = nn.Parameter(torch.zeros(nf, 1, inner))
        self.fc2_weight = nn.Parameter(torch.empty(nf, inner, inner))
        self.fc2_bias = nn.Parameter(torch.zeros(nf, 1, inner))
        self.glu_weight = nn.Parameter(torch.empty(nf, inner, 2 * h))
        self.glu_bias = nn.Parameter(torch.zeros(nf, 1, 2 * h))
        self.norm_weight = nn.Parameter(torch.ones(nf, 1, h))
        self.norm_bias = nn.Parameter(torch.zeros(nf, 1, h))
        self.resample = c != h
        if self.resample:
            self.register_buffer("interp", _interpolation_matrix(c, h), persistent=False)
            self.resample_mask = nn.Parameter(torch.zeros(nf, 1, h))
            self.resample_norm_weight = nn.Parameter(torch.ones(nf, 1, h))
            self.resample_norm_bias = nn.Parameter(torch.zeros(nf, 1, h))
        self.dropout = nn.Dropout(dropout)
        # as in the library, a single feature is encoded without selection (its weight is 1)
        self.flattened_grn = GatedResidualNetwork(nf * c, min(h, nf), nf, dropout) if nf > 1 else None
        self._init_like_library()

    @torch.no_grad()
    def _init_like_library(self) -> None:
        # nn.Linear(1, c) default init is U(-1, 1) for weight and bias (fan_in = 1)
        self.prescale_weight.uniform_(-1.0, 1.0)
        self.prescale_bias.uniform_(-1.0, 1.0)
        # kaiming_normal_(fan_in, leaky_relu a=0) for fc1/fc2, xavier_uniform_ for the GLU
        self.fc1_weight.normal_(0.0, math.sqrt(2.0 / self.fc1_weight.shape[1]))
        self.fc2_weight.normal_(0.0, math.sqrt(2.0 / self.fc2_weight.shape[1]))
        fan_in, fan_out = self.glu_weight.shape[1:]
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        self.glu_weight.uniform_(-bound, bound)

    def _residual_basis(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, 1, 3) moments (P, Q, R) and (F, 3, H) basis rows of the normed residual (see class doc)."""
        gate = self.interp * (2.0 * torch.sigmoid(self.resample_mask))  # (F, c, H): resample, then gate
        u, v = torch.bmm(self.prescale_weight, gate), torch.bmm(self.prescale_bias, gate)  # (F, 1, H) each
        p, q = u - u.mean(-1, keepdim=True), v - v.mean(-1, keepdim=True)
        moments = torch.cat([(p * p).mean(-1), (p * q).mean(-1), (q * q).mean(-1)], dim=-1)  # (F, 3)
        basis = torch.cat([p * self.resample_norm_weight, q * self.resample_norm_weight, self.resample_norm_bias], 1)
        return moments.unsqueeze(1), basis

    def _select(
        self, x: torch.Tensor, moments: torch.Tensor | None, basis: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, F) rows -> (N, H) selected embedding and (N, F) weights."""
        xs = x.t().unsqueeze(-1)  # (N, F) -> (F, N, 1)
        emb = torch.addcmul(self.prescale_bias, xs, self.prescale_weight)  # (F, N, c)
        hid = F.elu(torch.baddbmm(self.fc1_bias, emb, self.fc1_weight))  # (F, N, c') fc1 + ELU
        hid = torch.baddbmm(self.fc2_bias, hid, self.fc2_weight)  # (F, N, c') fc2
        gated = F.glu(torch.baddbmm(self.glu_bias, self.dropout(hid), self.glu_weight), dim=-1)  # (F, N, H)
        if self.resample:
            p2, pq, q2 = moments.unbind(-1)  # (F, 1) each
            scale = torch.rsqrt(xs.square() * p2.unsqueeze(-1) + 2 * xs * pq.unsqueeze(-1) + q2.unsqueeze(-1)
                                + LAYER_NORM_EPS)  # (F, N, 1): 1 / std of the resampled residual
            coef = torch.cat([scale * xs, scale, torch.ones_like(scale)], dim=-1)  # (F, N, 3)
            z = torch.baddbmm(gated, coef, basis)  # GLU output + normed residual, (F, N, H)
        else:
            z = gated + emb
        var_out = torch.addcmul(self.norm_bias, F.layer_norm(z, z.shape[-1:]), self.norm_weight)  # (F, N, H)

        if self.flattened_grn is None:
            weights = x.new_ones(x.shape[0], 1)
        else:
            flat_emb = emb.transpose(0, 1).reshape(x.shape[0], -1)  # (N, F*c), feature-major as the library's cat
            weights = torch.softmax(self.flattened_grn(flat_emb), dim=-1)  # (N, F)
        return (var_out * weights.t().unsqueeze(-1)).sum(0), weights  # (F, N, H) -> (N, H)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, F) features -> (B, L, H) selected embedding and (B, L, F) selection weights."""
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.num_inputs)  # (B*L, F)
        moments, basis = self._residual_basis() if self.resample else (None, None)
        step = self.chunk_rows if x.device.type == "cpu" else rows.shape[0]
        parts = [self._select(chunk, moments, basis) for chunk in rows.split(step)]
        out, weights = (torch.cat(p) for p in zip(*parts, strict=True))
        return out.reshape(*lead, self.hidden_size), weights.reshape(*lead, self.num_inputs)


class LibraryVariableSelection(nn.Module):
    """pytorch-forecasting's stock ``VariableSelectionNetwork`` on (B, L, F) tensors: the reference."""

    def __init__(self, num_inputs: int, input_size: int, hidden_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import VariableSelectionNetwork

        self.names = [f"x{i}" for i in range(num_inputs)]
        self.vsn = VariableSelectionNetwork(dict.fromkeys(self.names, input_size), hidden_size, dropout=dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, weights = self.vsn({n: x[..., i : i + 1] for i, n in enumerate(self.names)})
        return out, weights.squeeze(-2)  # (B, L, H), (B, L, 1, F) -> (B, L, F)


@torch.no_grad()
def copy_library_weights(target: VectorisedVariableSelection, source: LibraryVariableSelection) -> None:
    """Load the stock module's per-feature weights into the vectorised one (same parameterisation)."""
    vsn = source.vsn
    grns = [vsn.single_variable_grns[n] for n in source.names]
    pre = [vsn.prescalers[n] for n in source.names]

    def put(param: torch.Tensor, parts: list[torch.Tensor]) -> None:
        param.copy_(torch.stack(parts).reshape(param.shape))

    put(target.prescale_weight, [p.weight.t() for p in pre])  # (c, 1) -> (1, c)
    put(target.prescale_bias, [p.bias for p in pre])
    put(target.fc1_weight, [g.fc1.weight.t() for g in grns])
    put(target.fc1_bias, [g.fc1.bias for g in grns])
    put(target.fc2_weight, [g.fc2.weight.t() for g in grns])
    put(target.fc2_bias, [g.fc2.bias for g in grns])
    put(target.glu_weight, [g.gate_norm.glu.fc.weight.t() for g in grns])
    put(target.glu_bias, [g.gate_norm.glu.fc.bias for g in grns])
    put(target.norm_weight, [g.gate_norm.add_norm.norm.weight for g in grns])
    put(target.norm_bias, [g.gate_norm.add_norm.norm.bias for g in grns])
    if target.resample:
        put(target.resample_mask, [g.resample_norm.mask for g in grns])
        put(target.resample_norm_weight, [g.resample_norm.norm.weight for g in grns])
        put(target.resample_norm_bias, [g.resample_norm.norm.bias for g in grns])
    if target.flattened_grn is not None:
        target.flattened_grn.load_state_dict(vsn.flattened_grn.state_dict())
