"""SAM2 as a streaming MaskPropagator on Meta's `sam2` package."""
