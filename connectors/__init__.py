"""Generic PLC clients (OPC UA, Modbus TCP) that turn tags into `historian.Sample` records."""
