// SICK (Marelli et al. 2014), regression of the 1..5 relatedness score, the SemEval 2014 files: the
// paper's BERT-large setup (exits 0, 4, 12, 23) with the learning-to-exit module.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.paper + sledge.regression + {
  reader: { type: 'sick', target: 'relatedness' },
  train_data_path: 'data/sick/SICK_train.txt',
  validation_data_path: 'data/sick/SICK_trial.txt',
  test_data_path: 'data/sick/SICK_test_annotated.txt',
  num_epochs: 2,
})
