"""Signs that a trained trial's scores mean little, said beside them instead of silently ranked: training and
evaluation accuracy far apart (a model that behaves differently in eval mode, e.g. BatchNorm statistics
off), a network that predicts one class for every input, layers whose neurons never change state
(efficiency 0, which makes the network's efficiency and aIQ 0).
"""

from __future__ import annotations

from aiq_search.training import TrainResult

__all__ = ["ACCURACY_GAP", "doubts"]

# training accuracy this much above the evaluation accuracy (fractions) is worth a warning
ACCURACY_GAP = 0.25
NAMED_LAYERS = 3  # dead layers named in a warning; the rest are counted


def doubts(result: TrainResult, num_classes: int) -> list[str]:
    """The warnings for ``result`` (empty when none), each one short sentence naming its numbers."""
    found = []
    if result.train_accuracy - result.eval_accuracy > ACCURACY_GAP:
        found.append(f"training accuracy {result.train_accuracy:.3f} but {result.eval_split} accuracy "
                     f"{result.eval_accuracy:.3f} (in eval mode): check BatchNorm, dropout or other "
                     "train/eval differences")
    if result.predicted_classes == 1 < num_classes:
        found.append(f"predicts one class for every {result.eval_split} input")
    layers = result.efficiency.layer_efficiencies
    dead = [name for name, efficiency in layers.items() if efficiency == 0]
    if dead:
        more = f" and {len(dead) - NAMED_LAYERS} more" if len(dead) > NAMED_LAYERS else ""
        found.append(f"{len(dead)} of {len(layers)} layers dead (efficiency 0): "
                     f"{', '.join(dead[:NAMED_LAYERS])}{more}")
    return found
