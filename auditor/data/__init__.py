"""Dataset readers (-> Sample records) and writers of filtered copies in the input's format."""

from .records import Dataset, Sample
from .readers import SUPPORTED_SUFFIXES, read_dataset, record_lines
from .writers import cleaned_name, render_cleaned, render_flagged

__all__ = ["Dataset", "Sample", "SUPPORTED_SUFFIXES", "read_dataset", "record_lines", "cleaned_name",
           "render_cleaned", "render_flagged"]
