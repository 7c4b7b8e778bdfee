"""RetailFace services."""
