"""Delivery: the pipeline that carries samples from the inputs to every sink without losing any.

The agent runs the inputs and hands their batches over to a writer; the writer commits each
batch to a durable spool before it acknowledges it, then drains the spool into its sink with
retries; a fanout feeds several writers, each with a spool of its own.
"""
