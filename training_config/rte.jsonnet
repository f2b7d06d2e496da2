// RTE (SuperGLUE jsonl): the paper's BERT-large setup (exits 0, 4, 12, 23), 4 epochs for NLI. The test
// file has no labels: validation is val.jsonl.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.paper {
  reader: { type: 'rte' },
  train_data_path: 'data/rte/train.jsonl',
  validation_data_path: 'data/rte/val.jsonl',
  num_epochs: 4,
})
