// MultiNLI on the CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5), 4 epochs for NLI. Downloaded once
// and checked (sha256); local copies instead: docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local mnli = sledge.releases.mnli;
sledge.config(sledge.minilm {
  reader: { type: 'mnli' },
  train_data_path: mnli + '!multinli_1.0/multinli_1.0_train.jsonl',
  validation_data_path: mnli + '!multinli_1.0/multinli_1.0_dev_matched.jsonl',
  num_epochs: 4,
})
