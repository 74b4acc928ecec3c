"""Experiments on the simulated line: fault-free training data straight from the process model,
and labelled fault campaigns that score anomaly detection against the injected ground truth.

It joins the simulator (plc_sim) and the detectors (analytics), which know nothing of each other.
"""
