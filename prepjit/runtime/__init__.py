"""Runtime: on-disk cache, native code loading and calling."""
