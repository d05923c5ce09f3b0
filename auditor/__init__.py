"""bye-audit: find backdoored samples in a multimodal fine-tuning dataset (BYE)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bye-audit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
