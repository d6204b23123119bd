"""Backbone networks and weight resolution for the metrics (I3D, CLIP loading, taggers)."""
