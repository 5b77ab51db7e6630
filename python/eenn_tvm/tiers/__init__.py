"""The live deployment: a compiled network's tiers as separate processes that hand over over MQTT.

payload (the frames), deployment (ids, topics, what each tier expects), mqtt (connections), broker (Mosquitto
for tests and demos), module (a host tier's segments), server (`eenn-tvm serve`), gateway and device
(`eenn-tvm device`). docs/tiers.md describes the protocol.
"""
