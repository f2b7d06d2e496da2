// RTE (SuperGLUE jsonl: premise, hypothesis, entailment / not_entailment) on the CPU-sized MiniLM-L6
// backbone (exits 0, 1, 3, 5), 4 epochs for NLI. The test file has no labels: validation is val.jsonl.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.minilm {
  reader: { type: 'rte' },
  train_data_path: 'data/rte/train.jsonl',
  validation_data_path: 'data/rte/val.jsonl',
  num_epochs: 4,
})
