"""Measuring a model folder on labelled images: metrics as anomalib defines them, no torch."""
