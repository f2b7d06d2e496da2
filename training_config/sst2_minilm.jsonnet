// SST-2, sentence level, on the CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5). `make demo` trains it.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.minilm {
  reader: { type: 'sst_sentence' },
  train_data_path: 'data/sst2/stsa.binary.train',
  validation_data_path: 'data/sst2/stsa.binary.dev',
  test_data_path: 'data/sst2/stsa.binary.test',
  num_epochs: 2,
})
