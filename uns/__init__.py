"""The unified namespace on an MQTT broker: topics and payloads (plain JSON and Sparkplug B), the
publisher (a sink of the delivery pipeline), the ingest (an input) and the in-memory stream that
`detect --from mqtt://` scores."""
