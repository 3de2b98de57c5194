"""Metaflow flows: thin steps that call the package (TrainFlow; MonitorFlow later)."""
