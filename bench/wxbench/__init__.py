"""The wxgate benchmark harness (bench/run.py): processes, load, scenarios, report, plots."""
