"""VideoMolmo: the model (model.py), Molmo v1 multi-crop preprocessing (preprocessing.py), the Pointer (pointer.py)."""
