"""A whole study: sample metadata, server-side import, per-cell passes over every cell (in process or on Dask),
abundance, differential abundance, the report, and the built-in demo.

May import: base, prep, io, tools, store."""
