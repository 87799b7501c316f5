"""inloop: a reproducible workflow for CNN in-loop filters in video coding.

See README.md for the manual and docs/design.md for the architecture.
"""

__version__ = "0.1.0"
