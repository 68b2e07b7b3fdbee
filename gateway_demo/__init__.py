"""`gateway demo`: the whole loop on this machine (gateway_demo/run.py), and the provider
stand-ins it runs (gateway_demo/standins/)."""
