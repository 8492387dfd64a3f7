"""``python -m benchmarks.peers``: an outside peer (FuxiCTR's LongCTR models) on our data, see
:mod:`benchmarks.peers.run`."""
