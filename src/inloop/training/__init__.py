"""Patch stores, the shared trainer, losses and MLflow tracking."""
