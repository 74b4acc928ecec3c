"""Input plugins for PLCs (OPC UA, Modbus TCP and RTU) that turn tags into `core.sample.Sample`
records, and the connectors-file loader that builds them; each plugin is behind the one `Input`
interface of core.inputs and knows nothing of the simulator."""
