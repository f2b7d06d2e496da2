"""Dynamic int8 inference: every linear layer's weights in int8, activations quantized as they come."""

import warnings

import torch
from torch import nn

QUANTIZE = ("int8",)


def quantize_int8(module: nn.Module) -> nn.Module:
    """
    Replace every `nn.Linear` of `module` (the encoder layers' projections and feed-forward layers, the
    exit heads, the LTE module) by PyTorch's dynamically quantized int8 linear layer
    (`torch.ao.quantization.quantize_dynamic`: int8 weights, activations quantized per batch at run time,
    CPU only), in place. The embeddings, layer norms and softmaxes stay in float32, and the modules keep
    their places, so the layer-by-layer runner, its exits and every policy work unchanged. Returns `module`.
    """
    if any(parameter.is_cuda for parameter in module.parameters()):
        raise ValueError("int8 dynamic quantization runs on the CPU; load the model with --cuda-device -1")
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return module
