"""Leaderboard machinery: suites of cells, runners (serial, process pool, Ray), the SQLite results
store, aggregation with bootstrap confidence intervals, published reference rows and plots."""
