"""Sync-4DGS: 3D Gaussians deformed by the 4DGaussians field, with per-camera time offsets."""
