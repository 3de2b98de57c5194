"""The tasks' metrics, below every part that scores: the Data Challenge's intent score, ROC-AUC,
calibration (`intent`) and their bootstrap intervals (`uncertainty`). Training evaluates with them,
monitoring measures live quality with them, and the synthetic generator scores its oracle with
them: one definition each."""
