"""The on-disk workspace: datasets by content hash, labels with undo, session files; every write crash-safe.

May import: base, prep, io, tools."""
