"""From raw events to model-ready features and their summaries: compensation, arcsinh and scaling,
per-channel statistics, per-file quality control.

May import: base."""
