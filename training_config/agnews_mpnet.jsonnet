// AG News at base scale: all-mpnet-base-v2 (12 layers; `make backbone-mpnet` first), exits 0, 2, 6, 11.
// The release has train.csv and test.csv only: the dev set is a seeded 5% of train.csv (`#dev`).
// benchmarks/ trains it on its seeded split of the official test set (see benchmarks/README.md).
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.mpnet {
  reader: { type: 'ag_news' },
  train_data_path: 'data/ag_news/train.csv#train',
  validation_data_path: 'data/ag_news/train.csv#dev',
  test_data_path: 'data/ag_news/test.csv',
  num_epochs: 2,
})
