// STS-B (Cer et al. 2017), regression of a 0..5 similarity score, the original tab-separated files: the
// paper's BERT-large setup (exits 0, 4, 12, 23) with the learning-to-exit module.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.paper + sledge.regression + {
  reader: { type: 'stsb' },
  train_data_path: 'data/stsb/sts-train.csv',
  validation_data_path: 'data/stsb/sts-dev.csv',
  test_data_path: 'data/stsb/sts-test.csv',
  num_epochs: 2,
})
