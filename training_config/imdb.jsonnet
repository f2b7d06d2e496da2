// IMDB (Maas et al. 2011), the aclImdb folder layout: the paper's BERT-large setup.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.paper {
  reader: { type: 'imdb' },
  train_data_path: 'data/aclImdb/train',
  validation_data_path: 'data/aclImdb/test',
  num_epochs: 2,
})
