"""Development tooling: the local stack, dev certificates, synthetic data, model fetching and conversion.

Services never import this package (a test enforces it): it is for `make`, the tests, the
benchmarks and the demo.
"""
