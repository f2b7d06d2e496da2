// SNLI 1.0 jsonl on the CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5), 4 epochs for NLI.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.minilm {
  reader: { type: 'snli' },
  train_data_path: 'data/snli_1.0/snli_1.0_train.jsonl',
  validation_data_path: 'data/snli_1.0/snli_1.0_dev.jsonl',
  test_data_path: 'data/snli_1.0/snli_1.0_test.jsonl',
  num_epochs: 4,
})
