"""
int8 inference: linear layers' weights in int8 (one scale per output channel) and their inputs in int8.

`quantize_int8_rows` (the model's `quantize: "int8"`) gives every token vector its own activation scale,
and `quantize_int8_static` (`"int8-static"`) one scale per layer fitted on calibration data: either way
a row's answer depends on its own tokens only, never on the other rows of its batch or their padding.
`quantize_int8` is PyTorch's dynamic quantization (`"int8-dynamic"`), one activation scale per batch:
its answers depend on the batch, kept for comparison.
"""

import contextlib
import functools
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.nn.quantized import dynamic

from sledge.nn.encoder import LayerwiseEncoder

# The model's `quantize` settings: batch-invariant per-token (the default int8), batch-invariant static
# scales from calibration, PyTorch's per-batch dynamic quantization.
QUANTIZE = ("int8", "int8-static", "int8-dynamic")


class FullRangeLinear(dynamic.Linear):
    """
    PyTorch's dynamically quantized int8 linear layer with activations on all 8 bits (0-255), not 7.

    PyTorch's layer (`reduce_range=True`) quantizes activations to 0-127, because CPUs without VNNI
    multiply int8 pairs into 16-bit sums that saturate at full range; with VNNI they do not, and the
    bit it throws away is precision lost. `quantize_int8` uses this layer only where
    `full_range_is_exact()`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, False).to(x.dtype)


@functools.cache
def full_range_is_exact() -> bool:
    """
    Whether this process's int8 kernels multiply full-range activations without saturating: a
    256-input layer of weights 1 on inputs at the top of the range (every product 255 x 127, which
    16-bit pair sums cannot hold), checked against its exact answer. True on CPUs with VNNI (fbgemm's
    AVX512-VNNI kernels); False on AVX2 or AVX-512 without it, where the answer comes out about halved.
    """
    with _quiet():
        layer = dynamic.Linear(256, 1)
        weight = torch.quantize_per_channel(torch.ones(1, 256), torch.tensor([1 / 127]), torch.tensor([0]), 0,
                                            torch.qint8)
        layer.set_weight_bias(weight, torch.zeros(1))
    inputs = torch.ones(1, 256)
    inputs[0, 0] = 0.0  # zero point 0, scale 1/255: every other input quantizes to 255
    answer = torch.ops.quantized.linear_dynamic(inputs, layer._packed_params._packed_params, False)
    return abs(float(answer) - 255.0) < 2.0


@contextlib.contextmanager
def _quiet():
    """torch.ao.quantization and quantized tensors announce their move to torchao: not the user's concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def quantize_int8(module: nn.Module, full_range: bool | None = None) -> nn.Module:
    """
    Replace every `nn.Linear` of `module` (the encoder layers' projections and feed-forward layers, the
    exit heads, the LTE module) by a dynamically quantized int8 linear layer
    (`torch.ao.quantization.quantize_dynamic`: int8 weights with one scale per output channel,
    activations quantized per batch at run time, CPU only), in place. The embeddings, layer norms and
    softmaxes stay in float32, and the modules keep their places, so the layer-by-layer runner, its exits
    and every policy work unchanged. In the `attention` exit head the small self-attention block
    (`nn.MultiheadAttention`, whose projections PyTorch does not quantize dynamically) stays in float32;
    its projection in and its classifier are int8. Returns `module`.

    One scale per channel rather than per weight matrix: on the SST-2 test set, the MiniLM sledge
    model's last exit lost 1.4 points with one scale per matrix (0.8649 against 0.8786 at fp32) and none
    with one per channel (benchmarks/results/int8/detached-linear, and its per-tensor/). Activations use
    all 8 bits where the CPU's kernels allow it (`FullRangeLinear`, `full_range_is_exact`), 7 elsewhere;
    `full_range` False asks for 7 bits anyway (benchmarks/int8_bits.py compares them), True for 8 (an
    error where they would saturate).
    """
    if any(parameter.is_cuda for parameter in module.parameters()):
        raise ValueError("int8 dynamic quantization runs on the CPU; load the model with --cuda-device -1")
    exact = full_range_is_exact()
    if full_range and not exact:
        raise ValueError("int8 activations on 8 bits would saturate in this CPU's int8 kernels (no VNNI)")
    mapping = {nn.Linear: FullRangeLinear} if (exact if full_range is None else full_range) else None
    with _quiet():
        per_channel = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        return torch.ao.quantization.quantize_dynamic(
            module, per_channel, dtype=torch.qint8, mapping=mapping, inplace=True
        )


class _Int8MatMul(torch.autograd.Function):
    """
    (rows, k) activations, already rounded to integers in [-127, 127] and held as floats, times a (k, n)
    int8 weight: the exact int32 products' sums. Exported to ONNX as `MatMulInteger` on the activations
    shifted to uint8 (zero point 128), the kind of int8 product the CPU's fastest kernels take.
    """

    @staticmethod
    def forward(ctx, rounded: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return torch._int_mm(rounded.to(torch.int8), weight)

    @staticmethod
    def symbolic(g, rounded, weight):  # noqa: ANN001, ANN205 (the legacy ONNX exporter's graph)
        shifted = g.op("Add", rounded, g.op("Constant", value_t=torch.tensor(128.0)))
        unsigned = g.op("Cast", shifted, to_i=2)  # TensorProto.UINT8
        zero = g.op("Constant", value_t=torch.tensor(128, dtype=torch.uint8))
        return g.op("MatMulInteger", unsigned, weight, zero)


class Int8Linear(nn.Module):
    """
    A linear layer computed in int8: the weight rounded to int8 with one scale per output channel
    (symmetric: max |w| of the channel is 127), the input rounded to int8 with a symmetric scale that is
    either each token's own (max |x| of that vector / 127) or one fixed `input_scale` fitted on
    calibration data; the int32 products are summed exactly and scaled back to float. A row's output
    depends on that row only: batched answers are batch-1 answers.

    Parameters
    ----------
    linear : `nn.Linear`
        The float layer to replace (its weight and bias are read, not kept).
    input_scale : `float`, optional
        A fixed activation scale (max |x| seen in calibration / 127); None: each token's own.
    """

    def __init__(self, linear: nn.Linear, input_scale: float | None = None) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).clamp(-127, 127)
                             .to(torch.int8).t().contiguous())  # (in, out)
        self.register_buffer("weight_scale", scale)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(self.out_features)
        self.register_buffer("bias", bias)
        static = input_scale is not None
        self.register_buffer("input_scale", torch.tensor(float(input_scale) if static else 0.0))
        self.static = static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        if self.static:
            scale = self.input_scale
        else:
            scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        rounded = torch.round(rows / scale).clamp(-127.0, 127.0)
        summed = _Int8MatMul.apply(rounded, self.weight_int8)
        out = summed.float() * self.weight_scale * scale + self.bias  # per channel, then per row
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        scale = f"static {float(self.input_scale):.4g}" if self.static else "per token"
        return f"in_features={self.in_features}, out_features={self.out_features}, input scale {scale}"


class RowwiseAttention(nn.Module):
    """
    A transformer layer's self-attention block (`inner`) with each row attending over its own tokens
    only, so a row's attention is computed exactly as at batch 1, whatever the batch and its padding.

    PyTorch's attention kernels sum over the keys in an order that follows the padded length, so a
    row's attention output in a padded batch differs from batch 1 in the last bits (about 4e-7); int8
    rounds each token's activations to 1/127 of their largest, and a last-bit change that crosses a
    rounding step becomes a step, which can move an exit's answer. With `projections` (the block's
    query, key, value and optional output projections, by name) the projections run on the whole batch
    (row by row they are the same: int8 products are exact) and only the scaled dot-product attention
    runs per row, at batch 1 too; without, the whole block runs per row. ONNX export runs `inner`
    unchanged (ONNX Runtime's graphs stay batched).

    Parameters
    ----------
    inner : `nn.Module`
        The block, as `LayerwiseEncoder.attention_blocks` lists it.
    projections : `tuple[str, ...]`, optional
        Its query, key and value projections' names, then its output projection's, if any.
    """

    def __init__(self, inner: nn.Module, projections: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.projections = projections

    def forward(self, *args, **kwargs) -> tuple[torch.Tensor]:
        by_name = "query" in kwargs  # DistilBERT calls its block by keyword, with query = key = value
        hidden, mask = (kwargs["query"], kwargs["mask"]) if by_name else args[:2]
        exporting = torch.onnx.is_in_onnx_export()
        lengths = None if exporting else _row_lengths(mask)
        if lengths is None or (self.projections is None and len(lengths) == 1):
            return self.inner(*args, **kwargs)
        if self.projections is not None:
            return (self._attend(hidden, mask, lengths),)
        out = torch.zeros_like(hidden)
        for row, length in enumerate(lengths):
            tokens, cut = hidden[row : row + 1, :length], _cut(mask[row : row + 1], length)
            if by_name:
                result = self.inner(**{**kwargs, "query": tokens, "key": tokens, "value": tokens,
                                       "mask": cut})
            else:
                result = self.inner(tokens, cut, *args[2:], **kwargs)
            out[row, :length] = result[0][0]
        return (out,)

    def _attend(self, hidden: torch.Tensor, mask: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """softmax(q k^T / sqrt(d) + mask) v for each row over its own tokens, then the output projection."""
        inner, heads = self.inner, self.inner.num_attention_heads
        rows, length, _ = hidden.shape
        query, key, value = (getattr(inner, name)(hidden).view(rows, length, heads, -1).transpose(1, 2)
                             for name in self.projections[:3])
        mixed = query.new_zeros(rows, length, heads * query.size(-1))
        for row, own in enumerate(lengths):
            q, k, v = (x[row : row + 1, :, :own].contiguous() for x in (query, key, value))
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=_cut(mask[row : row + 1], own))
            mixed[row, :own] = attended[0].transpose(0, 1).reshape(own, -1)
        return getattr(inner, self.projections[3])(mixed) if len(self.projections) > 3 else mixed


def _row_lengths(mask: torch.Tensor | None) -> list[int] | None:
    """Each row's real length under a layer's mask (a (rows, length) 0/1 mask, or an additive one whose
    first query row is 0 plus any bias where attended, the dtype's minimum where padded); None unless
    every row is right-padded, or without a mask (HuggingFace's own model leaves it out when nothing is
    padded)."""
    if mask is None:
        return None
    real = mask > 0 if mask.dim() == 2 else mask[:, 0, 0, :] > torch.finfo(mask.dtype).min / 2
    lengths = real.sum(dim=1)
    prefix = torch.arange(real.size(1), device=mask.device)[None, :] < lengths[:, None]
    return lengths.tolist() if bool((prefix == real).all()) else None


def _cut(mask: torch.Tensor, length: int) -> torch.Tensor:
    """One row's mask cut to its first `length` tokens (keys, and queries where it has them)."""
    if mask.dim() == 2:
        return mask[:, :length].contiguous()
    return mask[:, :, : min(mask.size(2), length), :length].contiguous()


def linear_layers(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every plain `nn.Linear` of `module` (not subclasses such as `nn.MultiheadAttention`'s), by name."""
    return [(name, child) for name, child in module.named_modules() if type(child) is nn.Linear]


def quantize_int8_rows(module: nn.Module, scales: dict[str, float] | None = None) -> nn.Module:
    """
    Replace every plain `nn.Linear` of `module` (encoder projections and feed-forward layers, exit heads,
    the LTE module) by an `Int8Linear`, in place: per-token activation scales, or with `scales` (layer
    name -> max |input| seen in calibration, as `activation_ranges` gives) one fixed scale per layer. The
    embeddings, layer norms, softmaxes and the attention head's small self-attention block stay float32.
    Each encoder layer's self-attention then runs one row at a time (`RowwiseAttention`), and the torch
    backend pools and runs the exits one row at a time too (`runs_row_by_row`), so that batched answers
    are batch-1 answers bit for bit. Returns `module`.
    """
    if any(parameter.is_cuda for parameter in module.parameters()):
        raise ValueError("int8 quantization runs on the CPU; load the model with --cuda-device -1")
    for name, linear in linear_layers(module):
        if scales is not None and name not in scales:
            raise ValueError(f"no calibrated activation range for layer {name!r}")
        scale = None if scales is None else max(scales[name], 1e-8) / 127.0
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, Int8Linear(linear, scale))
    for encoder in [child for child in module.modules() if isinstance(child, LayerwiseEncoder)]:
        for parent, name, projections in encoder.attention_blocks():
            if not isinstance(getattr(parent, name), RowwiseAttention):
                setattr(parent, name, RowwiseAttention(getattr(parent, name), projections))
    return module


def runs_row_by_row(model: nn.Module) -> bool:
    """Whether `model` (a `MultiExitClassifier`) went through `quantize_int8_rows`, whose answers the
    torch backend keeps batch-invariant by running attention, pooling and exits one row at a time."""
    parent, name, _ = model.encoder.attention_blocks()[0]
    return isinstance(getattr(parent, name), RowwiseAttention)


@torch.no_grad()
def activation_ranges(module: nn.Module, run: "Callable[[], None]") -> dict[str, float]:
    """
    The largest |input| each plain `nn.Linear` of `module` sees while `run()` runs (padding included, as
    it is computed; its rows never reach a real row's answer): the calibration of `quantize_int8_rows`'s
    static scales. A layer that never runs (BERT's pooler) gets 0.
    """
    ranges: dict[str, float] = {name: 0.0 for name, _ in linear_layers(module)}

    def record(name: str):
        def hook(_module, args, _output) -> None:
            ranges[name] = max(ranges[name], float(args[0].detach().abs().max()))
        return hook

    hooks = [linear.register_forward_hook(record(name)) for name, linear in linear_layers(module)]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return ranges
