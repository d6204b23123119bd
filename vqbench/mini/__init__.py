"""The mini world: procedural dataset, models, training scripts and shipped weights."""
