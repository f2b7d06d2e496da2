// AG News on the CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5). The release has train.csv and
// test.csv only: the dev set is a seeded 5% of train.csv (`#dev`), training reads the rest (`#train`).
// Downloaded once and checked (sha256); local copies instead (e.g. this machine's partial one in
// ../shared/data/ag_news): docs/datasets.md. The benchmarks derive a seeded train/dev/eval split from
// the official test.csv and pass it with -o.
local sledge = import 'sledge.libsonnet';
local ag_news = sledge.releases.ag_news;
sledge.config(sledge.minilm {
  reader: { type: 'ag_news' },
  train_data_path: ag_news + '!ag_news_csv/train.csv#train',
  validation_data_path: ag_news + '!ag_news_csv/train.csv#dev',
  test_data_path: ag_news + '!ag_news_csv/test.csv',
  num_epochs: 2,
})
