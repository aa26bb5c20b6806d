"""CytoAutoCluster's library: no Streamlit, every capability a function or class.

Layers, each importing only those before it: base, prep, io, tools, store, study, run.
Each layer's __init__ says what it holds; tests/test_layers.py fails on an import up a layer or round a circle.
"""
