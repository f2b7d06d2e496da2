"""sledge: early-exit transformer classifiers for AllenNLP. Importing it registers every component
and makes AllenNLP's archive loading, `predict` and `evaluate` safe (see `sledge.patches`)."""

import sledge.commands  # noqa: F401
import sledge.dataset_readers  # noqa: F401
import sledge.models  # noqa: F401
import sledge.predictors  # noqa: F401
import sledge.training  # noqa: F401
from sledge import patches

patches.apply()

__version__ = "0.1.0"
