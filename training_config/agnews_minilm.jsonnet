// AG News on the CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5). The release has train.csv and
// test.csv only: the dev set is a seeded 5% of train.csv (`#dev`), training reads the rest (`#train`).
// On this machine only the official test set is complete: benchmarks/ derives a seeded
// train/dev/eval split from it and passes the paths with
// -o '{"train_data_path": ..., "validation_data_path": ..., "test_data_path": ...}'.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.minilm {
  reader: { type: 'ag_news' },
  train_data_path: 'data/ag_news/train.csv#train',
  validation_data_path: 'data/ag_news/train.csv#dev',
  test_data_path: 'data/ag_news/test.csv',
  num_epochs: 2,
})
