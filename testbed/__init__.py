"""Throwaway servers for tests and benchmarks (InfluxDB, Mosquitto) on free loopback ports in a
temporary folder. Development only: no product module imports it."""
