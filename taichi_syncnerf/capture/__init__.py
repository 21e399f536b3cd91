"""From a folder of unsynchronised videos to a dataset ``train`` reads (``taichi-syncnerf prepare``).

- :mod:`.media`: list and probe the input videos, decode them at one frame rate and size.
- :mod:`.audio`: extract a video's sound track; GCC-PHAT delay between two signals.
- :mod:`.visual_sync`: what moves, made consistent across cameras by their epipolar geometry.
- :mod:`.sync`: coarse per-camera offsets (audio or visual) and the common overlap.
- :mod:`.sfm`: structure from motion with pycolmap (optional extra ``capture``).
- :mod:`.checks`: refuse a degenerate reconstruction with one line saying what failed.
- :mod:`.layout`: write ``poses_bounds.npy``, ``camXX.mp4``, ``prepare.json``, ``offsets_init.json``.
- :mod:`.prepare`: the whole command, in order.
- :mod:`.dataset_sync`: coarse offsets for an existing dataset folder (``sync-estimate``).
- :mod:`.soundtrack`: give generated videos sound tracks (test data for the audio path).
"""
