"""The framework-free core: layer-by-layer encoders, exits, loss, and what is (not) computed."""

import numpy as np
import pytest
import torch
from transformers import AlbertConfig, AutoModel, BertConfig, DistilBertConfig, RobertaConfig

from sledge.nn import LayerwiseEncoder, MultiExitClassifier

TINY = dict(vocab_size=100, hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=4)
CONFIGS = {
    "bert": BertConfig(**TINY),
    "roberta": RobertaConfig(**TINY, pad_token_id=1),
    "albert": AlbertConfig(**TINY, embedding_size=16, num_hidden_groups=2),
    "distilbert": DistilBertConfig(vocab_size=100, dim=32, n_heads=2, hidden_dim=64, n_layers=4),
}


def batch(seed: int = 0, lengths=(9, 5, 7, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random token ids of mixed lengths and their attention mask."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(5, 100, (len(lengths), width), generator=generator)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids * mask + 1 * (1 - mask), mask


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_layerwise_encoder_reproduces_the_full_model(family):
    torch.manual_seed(0)
    encoder = LayerwiseEncoder(config=CONFIGS[family]).eval()
    reference = AutoModel.from_config(CONFIGS[family]).eval()
    reference.load_state_dict(encoder.transformer.state_dict())
    ids, mask = batch()
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        hidden, layer_mask = encoder.embed(ids, mask)
        for layer in range(encoder.num_layers):
            hidden = encoder.layer(layer, hidden, layer_mask)
            real = mask.bool()  # padded positions are free to differ
            torch.testing.assert_close(hidden[real], expected[layer + 1][real], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_a_single_exit_at_k_runs_only_layers_up_to_k(family):
    encoder = LayerwiseEncoder(config=CONFIGS[family])
    runs = []
    for module in set(encoder.layer_modules()):  # ALBERT runs one shared module for several layers
        module.register_forward_hook(lambda *_: runs.append(1))
    model = MultiExitClassifier(encoder, [1], num_labels=3).eval()
    ids, mask = batch()
    model(ids, mask)
    assert len(runs) == 2, f"{family}: {len(runs)} layer runs for a single exit at layer 1"
    runs.clear()
    MultiExitClassifier(encoder, [0, 2], num_labels=3).eval()(ids, mask)
    assert len(runs) == 3


def test_scalar_mix_weights_get_gradients_and_change_in_training():
    torch.manual_seed(0)
    model = MultiExitClassifier(LayerwiseEncoder(config=CONFIGS["bert"]), [0, 2, 3], num_labels=2)
    before = [head.mix.weights.detach().clone() for head in model.exits]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids, mask = batch()
    loss = model.loss(model(ids, mask), torch.tensor([0, 1, 1, 0]))
    loss.backward()
    for head in model.exits[1:]:  # the first exit mixes one layer: its softmax weight has zero gradient
        assert head.mix.weights.grad is not None and head.mix.weights.grad.abs().sum() > 0
    optimizer.step()
    for head, old in zip(model.exits[1:], before[1:]):
        assert not torch.equal(head.mix.weights.detach(), old)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def test_loss_is_the_sum_of_the_exits_cross_entropies_computed_independently():
    torch.manual_seed(0)
    model = MultiExitClassifier(LayerwiseEncoder(config=CONFIGS["bert"]), [0, 2, 3], num_labels=3).eval()
    for head in model.exits:  # non-trivial mixes
        head.mix.weights.data.normal_()
        head.mix.gamma.data.fill_(1.7)
    ids, mask = batch()
    labels = np.array([0, 2, 1, 2])
    loss = float(model.loss(model(ids, mask), torch.tensor(labels)).detach())
    # Independently: the HuggingFace model's hidden states, the mix and linear layer in numpy.
    with torch.no_grad():
        states = model.encoder.transformer(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    cls = [state[:, 0].numpy() for state in states.hidden_states[1:]]
    expected = 0.0
    for head in model.exits:
        w = head.mix.weights.detach().numpy()
        w = np.exp(w) / np.exp(w).sum()
        mixed = head.mix.gamma.item() * sum(w[j] * cls[j] for j in range(head.layer + 1))
        logits = mixed @ head.classifier.weight.detach().numpy().T + head.classifier.bias.detach().numpy()
        expected += -_log_softmax(logits)[np.arange(len(labels)), labels].mean()
    assert loss == pytest.approx(expected, rel=1e-4)


def test_layer_indices_are_checked():
    encoder = LayerwiseEncoder(config=CONFIGS["bert"])
    with pytest.raises(ValueError, match="layers 0..3"):
        MultiExitClassifier(encoder, [0, 4], num_labels=2)
    with pytest.raises(ValueError, match="strictly increasing"):
        MultiExitClassifier(encoder, [2, 1], num_labels=2)


@pytest.mark.parametrize("head", ["linear", "mlp", "attention"])
@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_early_exit_gradient_scales_only_what_the_earlier_exits_send_into_the_encoder(scale, head):
    torch.manual_seed(0)
    encoder = LayerwiseEncoder(config=CONFIGS["bert"])
    model = MultiExitClassifier(encoder, [0, 1, 3], num_labels=2, exit_head={"type": head}).eval()
    ids, mask = batch()
    labels = torch.tensor([0, 1, 1, 0])
    ce = torch.nn.functional.cross_entropy

    def grads(loss_of) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        loss_of().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    last = grads(lambda: ce(model(ids, mask)[-1], labels))
    early = grads(lambda: sum(ce(logits, labels) for logits in model(ids, mask)[:-1]))
    mixed = grads(lambda: sum(ce(logits, labels) for logits in model(ids, mask, early_exit_gradient=scale)))
    for name, grad in mixed.items():
        zero = torch.zeros_like(grad)
        if name.startswith("encoder"):
            expected = last.get(name, zero) + scale * early.get(name, zero)
        else:  # the heads keep their whole gradient
            expected = last.get(name, zero) + early.get(name, zero)
        torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-4)
    with torch.no_grad():  # values do not change
        for a, b in zip(model(ids, mask), model(ids, mask, early_exit_gradient=scale)):
            torch.testing.assert_close(a, b)
