"""Monitoring: prediction log, drift, delayed-label quality, the dashboard page."""
