// RTE (SuperGLUE jsonl) at base scale: all-mpnet-base-v2 (12 layers; `make backbone-mpnet` first),
// exits 0, 2, 6, 11, 4 epochs for NLI. The test file has no labels: validation is val.jsonl.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.mpnet {
  reader: { type: 'rte' },
  train_data_path: 'data/rte/train.jsonl',
  validation_data_path: 'data/rte/val.jsonl',
  num_epochs: 4,
})
