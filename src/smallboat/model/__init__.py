"""The intent model: the PyTorch modules, the training loop, the metrics and the baselines."""
