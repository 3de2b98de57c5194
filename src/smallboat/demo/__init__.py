"""The demo: its steps (`run`), the collect and serve demos, the closed loop, and the traffic
driver. It sits on top of `pipeline` and the parts; only the CLI imports it."""
