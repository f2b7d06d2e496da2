// RTE (SuperGLUE jsonl) at base scale: all-mpnet-base-v2 (12 layers; `make backbone-mpnet` first),
// exits 0, 2, 6, 11, 4 epochs for NLI. The test file has no labels: validation is val.jsonl.
// Downloaded once and checked (sha256); local copies instead: docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local rte = sledge.releases.rte;
sledge.config(sledge.mpnet {
  reader: { type: 'rte' },
  train_data_path: rte + '!RTE/train.jsonl',
  validation_data_path: rte + '!RTE/val.jsonl',
  num_epochs: 4,
})
