// STS-B (regression, 0..5) at base scale: all-mpnet-base-v2 (12 layers; `make backbone-mpnet` first),
// exits 0, 2, 6, 11, with the learning-to-exit module.
// Downloaded once and checked (sha256); local copies instead: docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local stsb = sledge.releases.stsb;
sledge.config(sledge.mpnet + sledge.regression + {
  reader: { type: 'stsb' },
  train_data_path: stsb + '!stsbenchmark/sts-train.csv',
  validation_data_path: stsb + '!stsbenchmark/sts-dev.csv',
  test_data_path: stsb + '!stsbenchmark/sts-test.csv',
  num_epochs: 2,
})
