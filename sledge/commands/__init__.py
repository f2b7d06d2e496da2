"""AllenNLP subcommands of sledge. AllenNLP finds them through a `.allennlp_plugins` file naming
`sledge` (in the working directory, or ~/.allennlp/plugins); `--include-package` comes too late."""

from sledge.commands.calibrate import Calibrate
from sledge.commands.cascade import CascadeCommand
from sledge.commands.difficulty import Difficulty
from sledge.commands.difficulty_labels import DifficultyLabels
from sledge.commands.score import Score
from sledge.commands.serve import Serve
from sledge.commands.sweep import Sweep

__all__ = ["Calibrate", "CascadeCommand", "Difficulty", "DifficultyLabels", "Score", "Serve", "Sweep"]
