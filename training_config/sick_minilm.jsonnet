// SICK (Marelli et al. 2014), regression of the 1..5 relatedness score, on the CPU-sized MiniLM-L6
// backbone (exits 0, 1, 3, 5) with the learning-to-exit module. The release is the authors' SICK.zip
// (one SICK.txt; `#SemEval_set=TRAIN` / `TRIAL` / `TEST` pick the SemEval 2014 splits). Downloaded once
// and checked (sha256); local copies instead: docs/datasets.md. For the entailment labels instead: -o '{"dataset_reader.target": "entailment", "model.regression": false,
// "trainer.validation_metric": "+accuracy"}'.
local sledge = import 'sledge.libsonnet';
local sick = sledge.releases.sick;
sledge.config(sledge.minilm + sledge.regression + {
  reader: { type: 'sick', target: 'relatedness' },
  train_data_path: sick + '!SICK.txt#SemEval_set=TRAIN',
  validation_data_path: sick + '!SICK.txt#SemEval_set=TRIAL',
  test_data_path: sick + '!SICK.txt#SemEval_set=TEST',
  num_epochs: 2,
  // `detached` with linear heads, not the MiniLM default (distillation into attention heads): that
  // pair was measured on SST-2, AG News and STS-B, not on SICK (no SICK data here).
  training_strategy: { type: 'detached' },
  exit_head: { type: 'linear' },
})
