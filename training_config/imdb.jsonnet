// IMDB (Maas et al. 2011), the aclImdb folder layout: the paper's BERT-large setup. The release
// (aclImdb_v1.tar.gz) has train/ and test/ only: the dev set is a seeded 5% of train/ (`#dev`), training
// reads the rest. Downloaded once and checked (sha256); local copies instead: docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local imdb = sledge.releases.imdb;
sledge.config(sledge.paper {
  reader: { type: 'imdb' },
  train_data_path: imdb + '!aclImdb/train#train',
  validation_data_path: imdb + '!aclImdb/train#dev',
  test_data_path: imdb + '!aclImdb/test',
  num_epochs: 2,
})
