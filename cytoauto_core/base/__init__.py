"""Records and contracts every layer shares: the Dataset, user-facing errors, progress and cancellation,
labelled cells, row chunks on disk, crash-safe writes and bounded archives.

May import: nothing of ours."""
