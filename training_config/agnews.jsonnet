// AG News (Zhang et al. 2015), the original csv files: the paper's BERT-large setup. The release (the
// authors' ag_news_csv.tar.gz) has train.csv and test.csv only: the dev set is a seeded 5% of train.csv
// (`#dev`; the reader's `dev_fraction` and `split_seed`), and training reads the other 95% (`#train`).
// Downloaded once and checked (sha256); local copies instead: docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local ag_news = sledge.releases.ag_news;
sledge.config(sledge.paper {
  reader: { type: 'ag_news' },
  train_data_path: ag_news + '!ag_news_csv/train.csv#train',
  validation_data_path: ag_news + '!ag_news_csv/train.csv#dev',
  test_data_path: ag_news + '!ag_news_csv/test.csv',
  num_epochs: 2,
})
