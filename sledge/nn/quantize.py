"""Dynamic int8 inference: linear layers' weights in int8 (per output channel), activations as they come."""

import warnings

import torch
from torch import nn

QUANTIZE = ("int8",)


def quantize_int8(module: nn.Module) -> nn.Module:
    """
    Replace every `nn.Linear` of `module` (the encoder layers' projections and feed-forward layers, the
    exit heads, the LTE module) by PyTorch's dynamically quantized int8 linear layer
    (`torch.ao.quantization.quantize_dynamic`: int8 weights with one scale per output channel,
    activations quantized per batch at run time, CPU only), in place. The embeddings, layer norms and
    softmaxes stay in float32, and the modules keep their places, so the layer-by-layer runner, its exits
    and every policy work unchanged. In the `attention` exit head the small self-attention block
    (`nn.MultiheadAttention`, whose projections PyTorch does not quantize dynamically) stays in float32;
    its projection in and its classifier are int8. Returns `module`.

    One scale per channel rather than per weight matrix: on the SST-2 test set, the MiniLM sledge
    model's last exit lost 1.4 points with one scale per matrix (0.8649 against 0.8786 at fp32) and none
    with one per channel (benchmarks/results/int8/detached-linear, and its per-tensor/).
    """
    if any(parameter.is_cuda for parameter in module.parameters()):
        raise ValueError("int8 dynamic quantization runs on the CPU; load the model with --cuda-device -1")
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        per_channel = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        torch.ao.quantization.quantize_dynamic(module, per_channel, dtype=torch.qint8, inplace=True)
    return module
