// AG News (Zhang et al. 2015), the original csv files: the paper's BERT-large setup. The release has
// train.csv and test.csv only: the dev set is a seeded 5% of train.csv (`#dev`; the reader's
// `dev_fraction` and `split_seed`), and training reads the other 95% (`#train`).
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.paper {
  reader: { type: 'ag_news' },
  train_data_path: 'data/ag_news/train.csv#train',
  validation_data_path: 'data/ag_news/train.csv#dev',
  test_data_path: 'data/ag_news/test.csv',
  num_epochs: 2,
})
