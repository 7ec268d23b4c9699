"""`rankserve eval`, the ranking-quality harness: evaluate.py drives it; queries.py selects and judges the
queries, runs.py ranks them with every system, metrics.py scores them, report.py prints and plots."""
