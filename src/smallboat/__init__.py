"""smallboat: local-first MLOps for e-commerce shopping-intent prediction."""

__version__ = "0.1.0"
