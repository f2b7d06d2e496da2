// AG News (Zhang et al. 2015), the original csv files: the paper's BERT-large setup.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.paper {
  reader: { type: 'ag_news' },
  train_data_path: 'data/ag_news/train.csv',
  validation_data_path: 'data/ag_news/dev.csv',
  test_data_path: 'data/ag_news/test.csv',
  num_epochs: 2,
})
