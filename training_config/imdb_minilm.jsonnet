// IMDB on the CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5); reviews truncated to 256 tokens. The
// release has train/ and test/ only: the dev set is a seeded 5% of train/ (`#dev`), training reads the rest.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.minilm {
  reader: { type: 'imdb' },
  train_data_path: 'data/aclImdb/train#train',
  validation_data_path: 'data/aclImdb/train#dev',
  test_data_path: 'data/aclImdb/test',
  max_length: 256,
  num_epochs: 2,
})
