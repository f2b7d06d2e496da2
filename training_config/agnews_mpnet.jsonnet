// AG News at base scale: all-mpnet-base-v2 (12 layers; `make backbone-mpnet` first), exits 0, 2, 6, 11.
// The release has train.csv and test.csv only: the dev set is a seeded 5% of train.csv (`#dev`).
// benchmarks/ trains it on its seeded split of the official test set (see benchmarks/README.md).
// Downloaded once and checked (sha256); local copies instead: docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local ag_news = sledge.releases.ag_news;
sledge.config(sledge.mpnet {
  reader: { type: 'ag_news' },
  train_data_path: ag_news + '!ag_news_csv/train.csv#train',
  validation_data_path: ag_news + '!ag_news_csv/train.csv#dev',
  test_data_path: ag_news + '!ag_news_csv/test.csv',
  num_epochs: 2,
})
