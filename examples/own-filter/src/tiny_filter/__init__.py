"""A worked example of a researcher's own in-loop filter for inloop (README, "Your own filter")."""

from .net import TinyFilter

__all__ = ["TinyFilter"]
