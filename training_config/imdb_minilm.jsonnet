// IMDB on the CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5); reviews truncated to 256 tokens. The
// release has train/ and test/ only: the dev set is a seeded 5% of train/ (`#dev`), training reads the
// rest. Downloaded once and checked (sha256); local copies instead: docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local imdb = sledge.releases.imdb;
sledge.config(sledge.minilm {
  reader: { type: 'imdb' },
  train_data_path: imdb + '!aclImdb/train#train',
  validation_data_path: imdb + '!aclImdb/train#dev',
  test_data_path: imdb + '!aclImdb/test',
  max_length: 256,
  num_epochs: 2,
})
