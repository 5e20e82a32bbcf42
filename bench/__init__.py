"""bench: which architecture, loss and mask-guidance strategy is really best, and does it reproduce?"""

__version__ = "0.1.0"
