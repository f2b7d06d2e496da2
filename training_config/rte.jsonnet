// RTE (SuperGLUE's RTE.zip, jsonl): the paper's BERT-large setup (exits 0, 4, 12, 23), 4 epochs for
// NLI. The test file has no labels: validation is val.jsonl. Downloaded once and checked (sha256); local
// copies instead (e.g. ../shared/data/rte): docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local rte = sledge.releases.rte;
sledge.config(sledge.paper {
  reader: { type: 'rte' },
  train_data_path: rte + '!RTE/train.jsonl',
  validation_data_path: rte + '!RTE/val.jsonl',
  num_epochs: 4,
})
