"""
Scoring a corpus with Ray Data (the optional extra `sledge[ray]`): `score_files` is `allennlp score`
(files in, part files out, resumable, every row exactly once); `score_dataset` adds the predictions
to a Ray Dataset of one's own. Both run the Predictor of `allennlp predict` on a pool of Ray actors
that each load the model once.
"""

from sledge.scoring.dataset import score_dataset
from sledge.scoring.run import score_files

__all__ = ["score_dataset", "score_files"]
