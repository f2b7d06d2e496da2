// SNLI 1.0 on the CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5), 4 epochs for NLI. Downloaded once
// and checked (sha256); local copies instead: docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local snli = sledge.releases.snli;
sledge.config(sledge.minilm {
  reader: { type: 'snli' },
  train_data_path: snli + '!snli_1.0/snli_1.0_train.jsonl',
  validation_data_path: snli + '!snli_1.0/snli_1.0_dev.jsonl',
  test_data_path: snli + '!snli_1.0/snli_1.0_test.jsonl',
  num_epochs: 4,
})
