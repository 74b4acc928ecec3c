"""Anomaly detection, fault evaluation and KPIs on the historian's data."""
