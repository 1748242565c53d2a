"""Pure-PyTorch references for every kernel op, with the kernel's signature.

Installed as `genbench.baselines`. Tests and benchmarks import the one reference here.
"""
