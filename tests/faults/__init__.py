"""Fault injection: kill -9 during training, checkpoint writes and cache builds; a full disk during
checkpoint and cache writes; a fuzz of broken datasets and configs. ``python -m tests.faults.table``
writes docs/FAULTS.md from the cases in :mod:`tests.faults.cases`."""
