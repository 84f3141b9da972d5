"""Benchmarks: one load against ipcnet and its peers, side by side in one run."""
