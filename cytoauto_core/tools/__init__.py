"""What runs on the cells: maps (PCA, t-SNE, UMAP), clustering, classifiers and their bundles, naming cells from
a marker table, suggestions, unknown cells, scores.

May import: base, prep, io."""
