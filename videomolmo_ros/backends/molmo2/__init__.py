"""Molmo2 (allenai/Molmo2-*): in-process through transformers (pointer.py) or on an OpenAI-compatible server
(remote.py).
"""
