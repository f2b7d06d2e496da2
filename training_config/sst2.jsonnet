// SST-2, sentence level (the stsa.binary split of the paper): the paper's BERT-large setup.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.paper {
  reader: { type: 'sst_sentence' },
  train_data_path: 'data/sst2/stsa.binary.train',
  validation_data_path: 'data/sst2/stsa.binary.dev',
  test_data_path: 'data/sst2/stsa.binary.test',
  num_epochs: 2,
})
