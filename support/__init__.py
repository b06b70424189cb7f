"""Helpers shared by the tests and the benchmarks: throwaway database servers."""
