// STS-B (regression, 0..5) at base scale: all-mpnet-base-v2 (12 layers; `make backbone-mpnet` first),
// exits 0, 2, 6, 11, with the learning-to-exit module.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.mpnet + sledge.regression + {
  reader: { type: 'stsb' },
  train_data_path: 'data/stsb/sts-train.csv',
  validation_data_path: 'data/stsb/sts-dev.csv',
  test_data_path: 'data/stsb/sts-test.csv',
  num_epochs: 2,
})
