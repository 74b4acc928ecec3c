"""The live view: a web page of the running line (states, trends, episodes beside injected
faults, connector health), read from the historian and served by `shopfloor up`."""
