"""The model layer: blocks, the one ``Net`` built from a ``NetSpec``, families and presets,
complexity counts (fvcore and analytic) and the budget solver. Nothing here knows about
datasets, training or experiments."""
