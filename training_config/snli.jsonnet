// SNLI 1.0 jsonl (gold label "-" skipped): the paper's BERT-large setup, 4 epochs for NLI.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.paper {
  reader: { type: 'snli' },
  train_data_path: 'data/snli_1.0/snli_1.0_train.jsonl',
  validation_data_path: 'data/snli_1.0/snli_1.0_dev.jsonl',
  test_data_path: 'data/snli_1.0/snli_1.0_test.jsonl',
  max_length: 128,
  num_epochs: 4,
})
