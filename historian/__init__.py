"""Where samples go: one interface, several backends (InfluxDB v1, InfluxDB v2, embedded SQLite)."""

from historian.sample import Point, Quality, Sample

__all__ = ["Point", "Quality", "Sample"]
