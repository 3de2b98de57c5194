"""Metaflow flows only: thin steps that call `smallboat.pipeline` (TrainFlow, MonitorFlow).

`pipeline.runner` finds these files by path and runs them through Metaflow's Runner API.
"""
