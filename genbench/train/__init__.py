"""Training loops per family, composed from registered parts."""
