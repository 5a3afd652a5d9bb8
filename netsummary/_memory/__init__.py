"""Memory of one training step or inference run, measured (see :mod:`.estimate` for the data,
:mod:`.step` for the run, :mod:`.figures` for its figures, :mod:`.optimizers` for the optimizer
names)."""
