// STS-B (Cer et al. 2017), regression of a 0..5 similarity score, the original Stsbenchmark.tar.gz
// (tab-separated sts-*.csv): the paper's BERT-large setup (exits 0, 4, 12, 23) with the learning-to-exit
// module. Downloaded once and checked (sha256); local copies instead (e.g. ../shared/data/stsb):
// docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local stsb = sledge.releases.stsb;
sledge.config(sledge.paper + sledge.regression + {
  reader: { type: 'stsb' },
  train_data_path: stsb + '!stsbenchmark/sts-train.csv',
  validation_data_path: stsb + '!stsbenchmark/sts-dev.csv',
  test_data_path: stsb + '!stsbenchmark/sts-test.csv',
  num_epochs: 2,
})
