// STS-B (Cer et al. 2017), regression of a 0..5 similarity score, the original tab-separated files, on
// the CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5) with the learning-to-exit module.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.minilm + sledge.regression + {
  reader: { type: 'stsb' },
  train_data_path: 'data/stsb/sts-train.csv',
  validation_data_path: 'data/stsb/sts-dev.csv',
  test_data_path: 'data/stsb/sts-test.csv',
  num_epochs: 2,
  // `detached` with linear heads, not the MiniLM classification default (distillation into attention
  // heads): that pair was measured on classification only.
  training_strategy: { type: 'detached' },
  exit_head: { type: 'linear' },
})
