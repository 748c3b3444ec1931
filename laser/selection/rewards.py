"""The old import path of `laser.selection.selector_reward` (renamed to match its config group): run folders
saved before the rename name `laser.selection.rewards.<file>.<Class>` as their `_target_`, and `resume=`
rebuilds the run from that saved config. Checkpoints hold no class paths, only state dicts."""

import sys

from laser.selection.selector_reward import advantage, agreement, base, heldout, negative_loss

sys.modules.update({f"{__name__}.{m.__name__.rsplit('.', 1)[1]}": m
                    for m in (advantage, agreement, base, heldout, negative_loss)})
