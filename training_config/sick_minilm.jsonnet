// SICK (Marelli et al. 2014), regression of the 1..5 relatedness score, the SemEval 2014 files, on the
// CPU-sized MiniLM-L6 backbone (exits 0, 1, 3, 5) with the learning-to-exit module. For the
// entailment labels instead: -o '{"dataset_reader.target": "entailment", "model.regression": false,
// "trainer.validation_metric": "+accuracy"}'.
local sledge = import 'sledge.libsonnet';
sledge.config(sledge.minilm + sledge.regression + {
  reader: { type: 'sick', target: 'relatedness' },
  train_data_path: 'data/sick/SICK_train.txt',
  validation_data_path: 'data/sick/SICK_trial.txt',
  test_data_path: 'data/sick/SICK_test_annotated.txt',
  num_epochs: 2,
  // `detached` with linear heads, not the MiniLM default (distillation into attention heads): that
  // pair was measured on SST-2, AG News and STS-B, not on SICK (no SICK data here).
  training_strategy: { type: 'detached' },
  exit_head: { type: 'linear' },
})
