"""Dynamic int8 inference: linear layers' weights in int8 (per output channel), activations as they come."""

import contextlib
import functools
import warnings

import torch
from torch import nn
from torch.ao.nn.quantized import dynamic

QUANTIZE = ("int8",)


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
