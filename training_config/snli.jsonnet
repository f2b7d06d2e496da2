// SNLI 1.0 (the snli_1.0.zip release, jsonl; gold label "-" skipped): the paper's BERT-large setup, 4
// epochs for NLI. Downloaded once and checked (sha256); local copies instead: docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local snli = sledge.releases.snli;
sledge.config(sledge.paper {
  reader: { type: 'snli' },
  train_data_path: snli + '!snli_1.0/snli_1.0_train.jsonl',
  validation_data_path: snli + '!snli_1.0/snli_1.0_dev.jsonl',
  test_data_path: snli + '!snli_1.0/snli_1.0_test.jsonl',
  max_length: 128,
  num_epochs: 4,
})
