"""Model backends behind the two interfaces of videomolmo_ros.contracts: Pointer (grounding), MaskPropagator (masks).

One folder per model family: molmo2/, videomolmo/, sam2/; registry.py resolves a parameter to a
class; point_grammar.py (point_format.py) and constrained_decoding.py hold the answer grammars the pointers share.
"""
