"""Workflows around the HVL method in ``hvl_core``: data and splits, feature cache, the trainer,
scoring, calibration, evaluation and reports, comparison runs, the benchmark, publishing and the
``hvl`` command line. Imports flow one way: ``app`` → ``hvl_tools`` → ``hvl_core``."""
