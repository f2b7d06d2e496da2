// SICK (Marelli et al. 2014), regression of the 1..5 relatedness score: the paper's BERT-large setup
// (exits 0, 4, 12, 23) with the learning-to-exit module. The release is the authors' SICK.zip (one
// SICK.txt; `#SemEval_set=TRAIN` / `TRIAL` / `TEST` pick the SemEval 2014 splits). Downloaded once and
// checked (sha256); local copies (SICK.txt, or the SemEval SICK_*.txt files) instead: docs/datasets.md.
local sledge = import 'sledge.libsonnet';
local sick = sledge.releases.sick;
sledge.config(sledge.paper + sledge.regression + {
  reader: { type: 'sick', target: 'relatedness' },
  train_data_path: sick + '!SICK.txt#SemEval_set=TRAIN',
  validation_data_path: sick + '!SICK.txt#SemEval_set=TRIAL',
  test_data_path: sick + '!SICK.txt#SemEval_set=TEST',
  num_epochs: 2,
})
