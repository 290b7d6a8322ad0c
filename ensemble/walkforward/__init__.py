"""Walk-forward evaluation: folds cut in one loaded span, one ordinary run per fold, stitched out-of-fold
predictions and their metrics (``ensemble walkforward``, and an experiment's ``walkforward:`` section)."""
