// IMDB (Maas et al. 2011), the aclImdb folder layout: the paper's BERT-large setup. The release has
// train/ and test/ only: the dev set is a seeded 5% of train/ (`#dev`), training reads the rest.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.paper {
  reader: { type: 'imdb' },
  train_data_path: 'data/aclImdb/train#train',
  validation_data_path: 'data/aclImdb/train#dev',
  test_data_path: 'data/aclImdb/test',
  num_epochs: 2,
})
