// MultiNLI (jsonl, or GLUE's MNLI tsv): the paper's BERT-large setup, 4 epochs for NLI.
// Validation is the matched dev set; the mismatched one is an -o away.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.paper {
  reader: { type: 'mnli' },
  train_data_path: 'data/multinli_1.0/multinli_1.0_train.jsonl',
  validation_data_path: 'data/multinli_1.0/multinli_1.0_dev_matched.jsonl',
  max_length: 128,
  num_epochs: 4,
})
