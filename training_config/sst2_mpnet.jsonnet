// SST-2, sentence level, at base scale: all-mpnet-base-v2 (12 layers; `make backbone-mpnet` first),
// exits 0, 2, 6, 11, with the SST-2 MiniLM config's strategy.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.mpnet {
  reader: { type: 'sst_sentence' },
  train_data_path: 'data/sst2/stsa.binary.train',
  validation_data_path: 'data/sst2/stsa.binary.dev',
  test_data_path: 'data/sst2/stsa.binary.test',
  num_epochs: 2,
  training_strategy: { type: 'distilled', backbone_gradient: 0.3 },
})
