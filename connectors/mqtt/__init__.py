"""MQTT input: `shopfloor ingest` reads the unified namespace (Sparkplug B) from a broker."""

from connectors.mqtt.ingest import MqttIngest

__all__ = ["MqttIngest"]
