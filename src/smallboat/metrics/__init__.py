"""The tasks' metrics, below every part that scores: the Data Challenge's intent score, ROC-AUC,
log-loss, calibration (`intent`) and their bootstrap intervals (`uncertainty`), both on the input
checks of `checks`; the next-item task's MRR@20, HR@20, coverage and slices (`ranking`). Training
evaluates with them, monitoring measures live quality with them, and the synthetic generator scores
its oracle with them: one definition each."""
