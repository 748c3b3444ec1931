"""Guards: checks between iterations that may undo what an iteration did (`conf/guard/`)."""
