// MultiNLI on the CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5), 4 epochs for NLI.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.minilm {
  reader: { type: 'mnli' },
  train_data_path: 'data/multinli_1.0/multinli_1.0_train.jsonl',
  validation_data_path: 'data/multinli_1.0/multinli_1.0_dev_matched.jsonl',
  num_epochs: 4,
})
