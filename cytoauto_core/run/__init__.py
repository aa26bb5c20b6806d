"""Running work: background jobs with progress and cancel, warm-up, thread bounds, batch apply, the train command.

May import: base, prep, io, tools, store, study."""
