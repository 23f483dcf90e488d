"""Data layer: sources, Spark-native generators, validation, and DataFrame -> numpy blocks."""

from sparkml_dist.data.blocks import (
           Block,
           BlockSet,
           arrow_to_block,
           load_block,
           select_for_arrow,
           to_blocks,
           validate_dataframe,
)
from sparkml_dist.data.validation import ColumnSpec, DataValidationError, check_columns

__all__ = ["Block", "BlockSet", "ColumnSpec", "DataValidationError", "arrow_to_block", "check_columns", "load_block",
           "select_for_arrow", "to_blocks", "validate_dataframe"]
