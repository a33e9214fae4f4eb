"""BTC→USD exchange-rate pipeline: sources, quota, Graphite and VictoriaMetrics.

Plain Python, importable and testable without Airflow. The DAG files in the
parent folder only wire these functions into tasks.
"""
