"""Speed and memory benchmarks of the backbones against reference implementations (not part of the package)."""
