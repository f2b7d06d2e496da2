// MultiNLI (the multinli_1.0.zip release, jsonl; the reader takes GLUE's MNLI tsv too): the paper's
// BERT-large setup, 4 epochs for NLI. Validation is the matched dev set; the mismatched one is an -o
// away. The test sets are unlabelled (GLUE's leaderboard). Downloaded once and checked (sha256); local
// copies instead: docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local mnli = sledge.releases.mnli;
sledge.config(sledge.paper {
  reader: { type: 'mnli' },
  train_data_path: mnli + '!multinli_1.0/multinli_1.0_train.jsonl',
  validation_data_path: mnli + '!multinli_1.0/multinli_1.0_dev_matched.jsonl',
  max_length: 128,
  num_epochs: 4,
})
