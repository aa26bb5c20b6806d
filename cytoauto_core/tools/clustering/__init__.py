"""Unsupervised clustering of every cell (FlowSOM-style), its cluster profiles and the user's edits of it.

May import: base, prep, io, tools."""
from .flowsom import Clustering, ClusteringParams, FlowSOM

__all__ = ["Clustering", "ClusteringParams", "FlowSOM"]
